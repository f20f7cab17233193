"""Render every executed notebook under reports/ to standalone HTML and write reports/index.html.

`python tools/build_reports.py [--reports reports] [--runs runs]` (run by `make demo` / `make reports`)."""
import argparse
from pathlib import Path

from snps3.reports import notebook_to_html, write_index

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=Path, default=Path("reports"), help="folder of executed notebooks (default: reports)")
    ap.add_argument("--runs", type=Path, nargs="*", default=[Path("runs")], help="folders holding run directories (default: runs)")
    a = ap.parse_args()
    for nb in sorted(a.reports.glob("*.ipynb")):
        print("html:", notebook_to_html(nb))
    print("index:", write_index(a.reports, a.runs))
