"""End to end through the workflow notebooks, as a user runs them: papermill pretrain -> finetune (retrieval, QA) -> eval
(retrieval fine-tuned and zero-shot, QA, MC) on the tiny benchmark with the tiny config; plus the CLI mirrors."""
import json, subprocess, sys
from pathlib import Path

import pytest

from helpers import ENV, metrics, papermill, results, run_cli

TINY = ["-p", "config", "tiny_cpu"]


@pytest.fixture(scope="module")
def chain(tiny_bench, tmp_path_factory):
    "Pre-train, then fine-tune retrieval and QA through the notebooks; returns the directories."
    d = tmp_path_factory.mktemp("chain")
    papermill("pretrain.ipynb", d / "pretrain.ipynb", *TINY, "-p", "data_root", str(tiny_bench), "-p", "save_dir", str(d / "pt"),
              "-p", "max_steps", "6")
    papermill("finetune.ipynb", d / "ft_retrieval.ipynb", *TINY, "-p", "task", "retrieval", "-p", "data_root", str(tiny_bench),
              "-p", "init_from", str(d / "pt"), "-p", "save_dir", str(d / "ft_retrieval"), "-p", "max_steps", "4",
              "-y", "overrides: [data.train_ann=retrieval_train.jsonl, loss.w_mlm=0.0, loss.mlm_text=false, loss.lvwm=false]")
    papermill("finetune.ipynb", d / "ft_qa.ipynb", *TINY, "-p", "task", "qa", "-p", "data_root", str(tiny_bench),
              "-p", "init_from", str(d / "pt"), "-p", "save_dir", str(d / "ft_qa"), "-p", "max_steps", "4",
              "-y", "overrides: [data.train_ann=qa_train.jsonl]")
    return d


def test_pretrain_notebook_writes_run_dir_with_falling_losses(chain):
    rows = metrics(chain / "pt")
    assert [r["step"] for r in rows] == list(range(1, 7))
    for k in ("loss/vtc", "loss/lvwm", "loss/mlm", "loss/mlm_text", "loss/cross_match", "loss/itm"): assert k in rows[0], k
    res = results(chain / "pt")
    assert res["task"] == "pretrain" and "last/loss" in res["metrics"] and "first/loss/vtc" in res["metrics"]


def test_finetune_notebooks(chain):
    ret, qa = metrics(chain / "ft_retrieval"), metrics(chain / "ft_qa")
    assert len(ret) == len(qa) == 4
    assert "loss/cross_match" in ret[0] and "loss/mlm" not in ret[0]
    assert "loss/qa" in qa[0]
    assert results(chain / "ft_retrieval")["task"] == "finetune_retrieval" and results(chain / "ft_qa")["task"] == "finetune_qa"
    assert json.loads((chain / "ft_qa" / "answers.json").read_text())["answers"]
    # the fine-tuned weights started from the pre-training run (restart), not from scratch
    assert "restart: " + str(chain / "pt") in (chain / "ft_retrieval" / "config.yaml").read_text()


@pytest.mark.parametrize("task,ck", [("retrieval", "ft_retrieval"), ("retrieval", "pt"), ("qa", "ft_qa"), ("mc", "ft_retrieval")])
def test_eval_notebook_writes_results(chain, tiny_bench, task, ck):
    out = chain / f"ev_{task}_{ck}"
    papermill("eval.ipynb", chain / f"ev_{task}_{ck}.ipynb", "-p", "task", task, "-p", "checkpoint", str(chain / ck),
                   "-p", "data_root", str(tiny_bench), "-p", "save_dir", str(out), "-p", "rerank_k", "4")
    res = json.loads((out / "results.json").read_text())
    for k in ("task", "dataset", "split", "metrics", "seed", "config_hash", "data_manifest_hash"): assert k in res, k
    assert (res["task"], res["split"]) == (task, "test")
    key = "cross/t2v/R@1" if task == "retrieval" else "acc"
    assert 0 <= res["metrics"][key] <= 100
    assert Path(res["checkpoint"]).parent.parent == chain / ck and res["run_dir"] == str(out)   # what was evaluated, where
    if task == "qa": assert "oov_share" in res["metrics"]


def test_cli_eval_refuses_to_replace_results(chain, tiny_bench):
    args = ["eval", "--config", "tiny_cpu", "task=mc", f"data.root={tiny_bench}", f"eval.checkpoint={chain / 'ft_retrieval'}",
            f"train.save_dir={chain / 'cli_mc'}", "--no-progress"]
    first = run_cli(args)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_cli(args)
    assert again.returncode != 0 and "eval.overwrite=true" in again.stderr
    assert run_cli(args + ["eval.overwrite=true"]).returncode == 0
