"""The ablation workflow notebook end to end on the tiny benchmark: the 5-variant × 2-seed grid pre-trains, fine-tunes
and evaluates every run, renders the table and the verdict, and a rerun reuses everything (no training, no evaluation,
no file of the grid touched)."""
import json, subprocess, sys
from pathlib import Path

import pytest

from helpers import ENV, results
from helpers import papermill as run_nb


def papermill(out, *params, timeout=600):
    "nbs/ablation.ipynb through papermill."
    return run_nb("ablation.ipynb", out, *params, timeout=timeout)

TINY = ["-p", "config", "tiny_cpu", "-p", "seeds", "2", "-p", "max_steps", "3", "-p", "finetune_steps", "2",
        "-y", "overrides: ['pretrain:train.eval_every=3']"]
REPORTS = ("ablation_results.json", "ablation_curves.png")   # what every execution rewrites


def snapshot(root):
    "{relative path: (size, mtime_ns)} of every file of the grid's run directories."
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in REPORTS}


@pytest.fixture(scope="module")
def grid(tiny_bench, tmp_path_factory):
    "Run the notebook twice on the same save_dir; snapshot the run directories in between."
    d = tmp_path_factory.mktemp("ablation")
    args = [*TINY, "-p", "data_root", str(tiny_bench), "-p", "save_dir", str(d / "runs")]
    papermill(d / "first.ipynb", *args)
    first = results(d / "runs", "ablation_results.json")
    before = snapshot(d / "runs")
    papermill(d / "again.ipynb", *args)
    return d, before, first


def test_table_and_verdict(grid):
    d, _, s = grid
    assert (s["trained_stages"], s["evaluations_run"]) == (5 * 2 * 3, 5 * 2 * 3)
    table = s["table"]
    assert len(table) == 5 and {r["network"] for r in table.values()} == {"SNP", "P3E"}
    for row in table.values():
        assert row["seeds"] == 2 and row["params (M)"] > 0
        for col in ("R@1", "R@5", "R@10", "MdR", "dual R@1", "zero-shot R@1", "QA acc"): assert " ± " in row[col], (col, row[col])
    snp, p3e = s["params"]["snp"], s["params"]["p3e"]
    assert snp < p3e
    for part in ("Table III, MSSM instead of MLM", "Table III, adding LVWM", "Table II, SNP instead of P3E", "Against the paper"):
        assert part in s["verdict"], part
    assert len(s["runs"]) == 10 and s["seeds"] == [0, 1]
    assert set(s["stats"]) == {"baseline", "mssm", "lvwm", "s3", "p3e"}
    assert (d / "runs" / "ablation_curves.png").stat().st_size > 0
    run = d / "runs" / "p3e" / "seed1"
    assert "architecture: p3e" in (run / "ft_qa" / "config.yaml").read_text()
    assert "restart: " + str(run / "pretrain") in (run / "ft_retrieval" / "config.yaml").read_text()
    assert json.loads((run / "eval_qa" / "results.json").read_text())["task"] == "qa"


def test_rerun_reuses_every_run(grid):
    d, before, first = grid
    s = results(d / "runs", "ablation_results.json")
    assert (s["trained_stages"], s["evaluations_run"]) == (0, 0)
    assert snapshot(d / "runs") == before          # no metrics.jsonl, checkpoint, summary or results.json written again
    assert s["table"] == first["table"] and s["verdict"] == first["verdict"]
