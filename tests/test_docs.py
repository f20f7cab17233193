"""`make docs`: the static site (tools/build_docs.py, nbconvert) has a page for every notebook, a sidebar in notebook order,
and no broken local link; executed pages carry their figures; the checker finds missing pages and broken links."""
import html, importlib.util, re, shutil, subprocess, sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

from helpers import ENV

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_docs", ROOT / "tools" / "build_docs.py")
docs = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(docs)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The site of this repository's notebooks, built as `make docs DOCS_FLAGS=--no-execute` builds it, with --check."
    out = tmp_path_factory.mktemp("docs") / "_docs"
    r = subprocess.run([sys.executable, "tools/build_docs.py", "--no-execute", "--check", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return out


def test_every_notebook_has_a_page_in_sidebar_order(site):
    library, workflows = docs.site_notebooks(ROOT / "nbs")
    assert len(library) >= 20 and {"pretrain.ipynb", "search.ipynb"} <= {p.name for p in workflows}
    for nb in library + workflows: assert (site / f"{nb.stem}.html").is_file(), nb
    for page in ("index.html", "13_api.html"):                    # every page carries the same sidebar, in notebook order
        text = (site / page).read_text()
        nav = text[text.index("<nav>"):text.index("</nav>")]
        pos = [nav.index(f'href="{nb.stem}.html"') for nb in library]
        assert pos == sorted(pos), page
    assert 'class="current"' in (site / "13_api.html").read_text().split("</nav>")[0]


def _text(page: Path) -> str:
    "What a reader sees of a page: tags removed, entities decoded."
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def test_pages_hold_code_and_prose_without_hidden_cells(site):
    api = _text(site / "13_api.html")
    assert "Use a trained model" in api and "VideoTextModel" in api and "def" in api
    assert "#| export" not in api and "#| hide" not in api and "tiny_run_dir(tmp)" in api
    assert "from snps3.testing import tiny_run_dir" not in api      # the #| hide imports cell is left out
    assert "Quick start" in _text(site / "index.html") and 'href="13a_search.html"' in (site / "index.html").read_text()


def test_links_resolve_and_checker_can_fail(site, tmp_path):
    assert docs.check_site(site, ROOT / "nbs") == []
    assert (site / "reports" / "ablation_curves.png").is_file()     # the README figure is copied beside the index page
    broken = tmp_path / "site"; shutil.copytree(site, broken)
    (broken / "08_eval.html").unlink()
    page = broken / "00_core.html"
    page.write_text(page.read_text().replace("</main>", '<a href="nowhere.html">x</a><a href="#no-such-anchor">y</a></main>'))
    problems = docs.check_site(broken, ROOT / "nbs")
    assert any("no page for 08_eval.ipynb" in p for p in problems)
    assert any("nowhere.html" in p for p in problems) and any("no-such-anchor" in p for p in problems)
    assert any("08_eval.html" in p and "does not exist" in p for p in problems)   # the sidebar links of every page


def test_executed_notebooks_show_figures(tmp_path):
    nbs = tmp_path / "nbs"; nbs.mkdir()
    plot = new_notebook(cells=[new_raw_cell("---\nskip_exec: true\n---"), new_markdown_cell("# Plots\n> A figure."),
                               new_code_cell("#| hide\nsecret = 'hidden cell'"),
                               new_code_cell("#| export\nimport matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]); plt.show()"),
                               new_code_cell("#| slow\nraise RuntimeError('slow cells are shown, not run')")],
                        metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}})
    other = new_notebook(cells=[new_markdown_cell("# Other\n> Links.\n\nSee [the plots](00_plots.ipynb#Plots) and [home](index.ipynb).")])
    nbformat.write(plot, str(nbs / "00_plots.ipynb")); nbformat.write(other, str(nbs / "01_other.ipynb"))
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Home")]), str(nbs / "index.ipynb"))
    res = docs.build_site(nbs, tmp_path / "site", execute_nbs=True, log=lambda *a: None)
    assert res["errors"] == {}
    page = (tmp_path / "site" / "00_plots.html").read_text()
    assert "data:image/png;base64," in page and "slow cells are shown, not run" in _text(tmp_path / "site" / "00_plots.html")
    assert "hidden cell" not in page and "skip_exec" not in page
    assert 'href="00_plots.html#Plots"' in (tmp_path / "site" / "01_other.html").read_text()
    assert docs.check_site(tmp_path / "site", nbs) == []
