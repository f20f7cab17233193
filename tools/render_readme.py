"""Render README.md from nbs/index.ipynb (quarto, which nbdev_readme needs, cannot be installed here).

Markdown cells are copied; code cells are shown as ```python blocks unless they carry `#| hide`;
text/markdown and stream outputs of code cells are kept. `--check` exits 1 when README.md is stale.
"""
import argparse, sys
from pathlib import Path
import nbformat

def render(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for cell in nb.cells:
        src = cell.source.strip("\n")
        if cell.cell_type == "markdown": parts.append(src); continue
        if cell.cell_type != "code": continue
        lines = src.splitlines()
        flags = [l for l in lines if l.startswith("#|")]
        if any("hide" in l for l in flags): continue
        code = "\n".join(l for l in lines if not l.startswith("#|")).strip("\n")
        if code and not any("echo: false" in l for l in flags): parts.append(f"```python\n{code}\n```")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream": parts.append(f"```\n{''.join(out['text']).rstrip()}\n```")
            elif "text/markdown" in out.get("data", {}): parts.append("".join(out["data"]["text/markdown"]).rstrip())
    return "<!-- generated from nbs/index.ipynb by tools/render_readme.py: edit the notebook, not this file -->\n\n" + "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nb", default="nbs/index.ipynb"); ap.add_argument("--out", default="README.md")
    ap.add_argument("--check", action="store_true", help="exit 1 if the README differs from the notebook")
    a = ap.parse_args()
    text = render(Path(a.nb))
    if a.check:
        if not Path(a.out).exists() or Path(a.out).read_text(encoding="utf-8") != text:
            sys.exit(f"{a.out} is stale: run `make readme` (python tools/render_readme.py) and commit it")
        print(f"{a.out} matches {a.nb}"); sys.exit(0)
    Path(a.out).write_text(text, encoding="utf-8"); print(f"wrote {a.out}")
