"""Render the notebooks as a static HTML site under _docs/ with nbconvert (nbdev's own site needs Quarto, which cannot be
installed here): an index page (nbs/index.ipynb and a table of contents), one page per library notebook and per workflow
notebook, a sidebar in notebook order. Cells flagged `#| hide` and raw cells are left out and `#|` directives stripped,
as nbdev's docs do. With execution (the default) each library notebook is run first (nbclient; `#| slow` and
`#| eval: false` cells are shown but not run), so its figures and outputs appear on the page.

    python tools/build_docs.py                 # _docs/, executing the library notebooks (a few minutes on 2 cores)
    python tools/build_docs.py --no-execute    # code and prose only, seconds
    python tools/build_docs.py --check         # also verify that every page exists and every local link resolves
"""
import argparse, copy, html, re, sys, warnings
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat

SKIP_EXEC = ("slow", "eval: false", "eval:false")


def _flags(cell) -> list[str]:
    "The `#|` directives of a cell, without the prefix."
    return [l[2:].strip() for l in cell.source.splitlines() if l.startswith("#|")]


def site_notebooks(nbs_dir: Path) -> tuple[list[Path], list[Path]]:
    "(library notebooks `NN[a]_*.ipynb` in file order, workflow notebooks in name order); index.ipynb is the home page."
    nbs = sorted(p for p in Path(nbs_dir).glob("*.ipynb") if not p.name.startswith("."))
    library = [p for p in nbs if re.match(r"\d\d[a-z]?_", p.name)]
    return library, [p for p in nbs if p not in library and p.name != "index.ipynb"]


def notebook_title(nb, fallback: str) -> tuple[str, str]:
    "(title, one-line summary) from the notebook's `# Title` and `> summary` markdown."
    for c in nb.cells:
        if c.cell_type != "markdown": continue
        m = re.search(r"^# (.+)$", c.source, re.M)
        if m:
            s = re.search(r"^> (.+)$", c.source, re.M)
            return m.group(1).strip(), (s.group(1).strip() if s else "")
    return fallback, ""


def _skipped(cell) -> bool: return any(f.startswith(SKIP_EXEC) for f in _flags(cell))


def execute(nb, path: Path, timeout: int = 600):
    "Run a notebook in its folder (nbclient); cells flagged slow / eval: false are not run. Returns (notebook, error or None)."
    from nbclient import NotebookClient
    run = copy.deepcopy(nb)
    for c in run.cells:
        if c.cell_type == "code" and _skipped(c): c.source = ""
    client = NotebookClient(run, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    client.execute()
    out = copy.deepcopy(nb)
    error = None
    for shown, ran in zip(out.cells, run.cells):
        if shown.cell_type == "code" and not _skipped(shown):
            shown.outputs, shown.execution_count = ran.outputs, ran.execution_count
            err = next((o for o in ran.outputs if o.get("output_type") == "error"), None)
            if err and error is None: error = f"{err.get('ename')}: {err.get('evalue')}"
    return out, error


def prepare(nb):
    "The notebook as the docs show it: no raw or hidden cells, no `#|` directive lines."
    out = copy.deepcopy(nb)
    cells = []
    for c in out.cells:
        if c.cell_type == "raw" or "hide" in _flags(c): continue
        if c.cell_type == "code":
            c.source = "\n".join(l for l in c.source.splitlines() if not l.startswith("#|")).strip("\n")
            if not c.source and not c.get("outputs"): continue
        cells.append(c)
    out.cells = cells
    return out


_CSS = """body{margin:0;font-family:system-ui,-apple-system,Segoe UI,sans-serif;color:#222;line-height:1.5}
nav{position:fixed;top:0;left:0;bottom:0;width:250px;overflow-y:auto;background:#f6f7f9;border-right:1px solid #ddd;padding:1em;font-size:.88em}
nav h2{font-size:1em;margin:.2em 0 .6em} nav h3{font-size:.8em;text-transform:uppercase;color:#777;margin:1.2em 0 .3em}
nav ol{padding-left:1.2em;margin:0} nav li{margin:.15em 0} nav a{color:#245;text-decoration:none} nav a.current{font-weight:bold;color:#000}
main{margin-left:290px;padding:1em 2em 3em;max-width:980px} pre{background:#f5f5f5;padding:.6em;overflow-x:auto;font-size:.85em}
div.jp-InputArea pre,div.input_area pre{background:#f0f3f7;border-left:3px solid #9ab}
img{max-width:100%} table{border-collapse:collapse;font-size:.9em} th,td{border:1px solid #ccc;padding:3px 7px}
.jp-InputPrompt,.jp-OutputPrompt,.prompt{display:none} code{font-size:.9em}"""


def _pygments_css() -> str:
    from pygments.formatters import HtmlFormatter
    return HtmlFormatter().get_style_defs(".highlight")


def _sidebar(pages: list[dict], current: str) -> str:
    "Navigation: home, then the library notebooks in order, then the workflow notebooks."
    def item(p):
        cls = ' class="current"' if p["file"] == current else ""
        return f'<li><a href="{p["file"]}"{cls} title="{html.escape(p["summary"], quote=True)}">{html.escape(p["title"])}</a></li>'
    def items(kind): return "".join(item(p) for p in pages if p["kind"] == kind)
    return (f'<nav><h2><a href="index.html">snps3</a></h2><h3>Library</h3><ol start="0">{items("library")}</ol>'
            f'<h3>Workflow notebooks</h3><ul>{items("workflow")}</ul></nav>')


def _page(title: str, body: str, pages: list[dict], current: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{html.escape(title)} · snps3</title>\n'
            f"<style>{_CSS}\n{_pygments_css()}</style></head>\n<body>\n{_sidebar(pages, current)}\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def _body(nb, src: Path) -> str:
    "nbconvert's basic template (cells only), prompts left out, images inline."
    from nbconvert import HTMLExporter
    ex = HTMLExporter(template_name="basic", embed_images=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = ex.from_notebook_node(nb, resources={"metadata": {"name": src.stem, "path": str(src.parent)}})
    return body


def _relink(page: str, names: set[str]) -> str:
    "Links to a notebook of the site (`08_eval.ipynb`, `nbs/08_eval.ipynb#x`) point at its page instead."
    def fix(m):
        target, frag = m.group(2), m.group(3) or ""
        name = Path(unquote(target)).name
        return f'{m.group(1)}{name[:-6]}.html{frag}"' if name in names else m.group(0)
    return re.sub(r'(href=")([^"#:]*?\.ipynb)(#[^"]*)?"', fix, page)


def copy_assets(page: str, out_dir: Path, roots: list[Path]) -> list[Path]:
    "Local files a page links to (e.g. a README figure under reports/), copied from the first root that has them into out_dir."
    import shutil
    p = _Links(); p.feed(page); copied = []
    for link in p.links:
        u = urlparse(link)
        if u.scheme or not u.path or link.startswith("//") or u.path.endswith(".html"): continue
        dest = (out_dir / unquote(u.path)).resolve()
        if dest.exists() or not dest.is_relative_to(out_dir.resolve()): continue
        for root in roots:
            src = (root / unquote(u.path)).resolve()
            if src.is_file() and src.is_relative_to(roots[-1].resolve()):          # never outside the repository
                dest.parent.mkdir(parents=True, exist_ok=True); shutil.copyfile(src, dest); copied.append(dest); break
    return copied


def build_site(nbs_dir="nbs", out_dir="_docs", execute_nbs: bool = True, timeout: int = 600, log=print) -> dict:
    "Render the site; returns {'pages': [written files], 'errors': {notebook: first error}} (errors when executing)."
    nbs_dir, out_dir = Path(nbs_dir), Path(out_dir)
    library, workflows = site_notebooks(nbs_dir)
    nbs = {p: nbformat.read(p, as_version=4) for p in library + workflows}
    pages = [{"file": p.stem + ".html", "src": p, "kind": "library" if p in library else "workflow",
              **dict(zip(("title", "summary"), notebook_title(nbs[p], p.stem)))} for p in library + workflows]
    names = {p.name for p in library + workflows} | {"index.ipynb"}
    out_dir.mkdir(parents=True, exist_ok=True)
    written, errors = [], {}
    for pg in pages:
        nb = nbs[pg["src"]]
        if execute_nbs and pg["kind"] == "library":
            log(f"executing {pg['src']}")
            nb, err = execute(nb, pg["src"], timeout)
            if err: errors[pg["src"].name] = err; log(f"  {pg['src'].name}: {err}")
        body = _relink(_body(prepare(nb), pg["src"]), names)
        copy_assets(body, out_dir, [nbs_dir, nbs_dir.parent])
        written.append(out_dir / pg["file"]); written[-1].write_text(_page(pg["title"], body, pages, pg["file"]), encoding="utf-8")
    written.append(_index_page(nbs_dir, out_dir, pages, names))
    log(f"wrote {len(written)} pages to {out_dir}/")
    return {"pages": written, "errors": errors}


def _index_page(nbs_dir: Path, out_dir: Path, pages: list[dict], names: set[str]) -> Path:
    "index.html: nbs/index.ipynb (the README's source) followed by a table of contents."
    idx = nbs_dir / "index.ipynb"
    intro = _relink(_body(prepare(nbformat.read(idx, as_version=4)), idx), names) if idx.exists() else "<h1>snps3</h1>"
    rows = "".join(f'<tr><td><a href="{p["file"]}">{html.escape(p["title"])}</a></td><td><code>{html.escape(p["src"].name)}</code></td>'
                   f'<td>{html.escape(p["summary"])}</td></tr>' for p in pages)
    toc = f'<h2 id="contents">Contents</h2>\n<table><tr><th>page</th><th>notebook</th><th>what</th></tr>{rows}</table>'
    copy_assets(intro, out_dir, [nbs_dir, nbs_dir.parent])
    path = out_dir / "index.html"
    path.write_text(_page("snps3", toc + "\n" + intro, pages, "index.html"), encoding="utf-8")
    return path


class _Links(HTMLParser):
    "Collects href / src attributes and element ids of a page."
    def __init__(self):
        super().__init__(); self.links, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v: self.links.append(v)
            if k == "id" and v: self.ids.add(v)


def check_site(out_dir="_docs", nbs_dir="nbs") -> list[str]:
    "Problems of a built site: a notebook without its page, a local link to a file that does not exist, or to a missing anchor."
    out_dir = Path(out_dir)
    library, workflows = site_notebooks(nbs_dir)
    problems = [f"no page for {p.name}: {out_dir / (p.stem + '.html')}" for p in library + workflows + [Path("index.ipynb")]
                if not (out_dir / (p.stem + ".html")).is_file()]
    parsed = {}
    for page in sorted(out_dir.glob("*.html")):
        parsed[page.name] = _Links(); parsed[page.name].feed(page.read_text(encoding="utf-8"))
    for name, p in parsed.items():
        for link in p.links:
            u = urlparse(link)
            if u.scheme or link.startswith(("//", "mailto:")): continue      # external (and data: URIs)
            target = (out_dir / unquote(u.path)).resolve() if u.path else (out_dir / name).resolve()
            if not target.is_file(): problems.append(f"{name}: link {link!r} -> {target} does not exist"); continue
            ids = parsed[target.name].ids if target.suffix == ".html" and target.name in parsed else None
            if u.fragment and ids is not None and u.fragment not in ids and unquote(u.fragment) not in ids:
                problems.append(f"{name}: link {link!r}: no element with id {u.fragment!r} in {target.name}")
    return problems


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nbs", default="nbs"); ap.add_argument("--out", default="_docs")
    ap.add_argument("--no-execute", action="store_true", help="render the notebooks as stored (no outputs), without running them")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell when executing")
    ap.add_argument("--check", action="store_true", help="after building, fail when a page is missing or a local link is broken")
    a = ap.parse_args()
    res = build_site(a.nbs, a.out, not a.no_execute, a.timeout)
    problems = check_site(a.out, a.nbs) if a.check else []
    for p in problems: print("docs:", p, file=sys.stderr)
    for nb, err in res["errors"].items(): print(f"docs: {nb} raised {err} when executed (the page shows the error)", file=sys.stderr)
    sys.exit(1 if problems or res["errors"] else 0)
