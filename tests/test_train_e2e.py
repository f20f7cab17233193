"""End-to-end pre-training: torchrun gloo vs 1 process, SIGKILL + resume, NaN stop, pickle refusal."""
import os, pickle, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from helpers import ENV, latest_weights, metrics, pretrain_args, run_cli, run_torchrun

LOSSES = ["loss/vtc", "loss/lvwm", "loss/mlm", "loss/mlm_text", "loss/cross_match", "loss/itm"]


def test_tiny_run_logs_every_loss_and_writes_run_dir(tiny_bench, tmp_path):
    r = run_cli(pretrain_args(tiny_bench, tmp_path / "run", "train.max_steps=4"))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = metrics(tmp_path / "run")
    assert [x["step"] for x in rows] == [1, 2, 3, 4]
    for k in LOSSES + ["lr", "loss"]: assert all(k in x for x in rows), k
    for f in ("config.yaml", "summary.json", "checkpoints/step_4/model.safetensors", "checkpoints/step_4/trainer_state.safetensors"):
        assert (tmp_path / "run" / f).exists(), f
    # an existing run is never overwritten silently
    again = run_cli(pretrain_args(tiny_bench, tmp_path / "run", "train.max_steps=4"))
    assert again.returncode != 0 and "train.resume=auto" in again.stderr
    # resuming a finished run trains nothing and keeps the summary and the metrics of the run that trained it
    summary = (tmp_path / "run" / "summary.json").read_text()
    done = run_cli(pretrain_args(tiny_bench, tmp_path / "run", "train.max_steps=4", "train.resume=auto"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nothing to do" in done.stdout
    assert (tmp_path / "run" / "summary.json").read_text() == summary
    assert [x["step"] for x in metrics(tmp_path / "run")] == [1, 2, 3, 4]


FSDP = ("train.parallel=fsdp", "loss.cross_match=all_pairs", "loss.lvwm_stage=both")


@pytest.mark.parametrize("extra", [("loss.cross_match=hard_k", "model.cross_residual=20"),
                                   ("loss.cross_match=all_pairs", "loss.moco=true", "loss.lvwm_stage=both"), FSDP],
                         ids=["ddp_hard_k", "ddp_all_pairs_moco", "fsdp_all_pairs"])
def test_two_process_gloo_equals_one_process(tiny_bench, tmp_path, extra):
    "Same global batch on 1 and 2 processes (DDP or FSDP2): every loss equal within 1e-5 over 10 steps (negatives gathered with gradients)."
    one = run_cli(pretrain_args(tiny_bench, tmp_path / "one", *extra))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_torchrun(pretrain_args(tiny_bench, tmp_path / "two", *extra))
    assert two.returncode == 0, two.stderr[-5000:]
    m1, m2 = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert len(m1) == len(m2) == 10
    for a, b in zip(m1, m2):
        for k in LOSSES + ["loss"]:
            assert abs(a[k] - b[k]) < 1e-5, (a["step"], k, a[k], b[k])
    if "train.parallel=fsdp" in extra:   # the 2-rank FSDP2 checkpoint (gathered to full tensors) continues in 1 process like the 1-process run
        for run in ("one", "two"):
            r = run_cli(pretrain_args(tiny_bench, tmp_path / run, *extra, "train.max_steps=11", "train.resume=auto"))
            assert r.returncode == 0, r.stderr[-3000:]
        a, b = metrics(tmp_path / "one")[-1], metrics(tmp_path / "two")[-1]
        assert a["step"] == b["step"] == 11 and abs(a["loss"] - b["loss"]) < 1e-4, (a["loss"], b["loss"])


def _slow_run(bench, save_dir, marker, extra=(), sleep_in_step=0.3, hang_checkpoint_step=None):
    "Start a pre-training run whose steps are slowed down (and optionally hangs inside one checkpoint write)."
    code = f"""
import time, sys, pathlib
import snps3.train as t, snps3.checkpoint as c
orig = t.pretrain_losses                       # the loop takes its objective from snps3.train (`task_hooks`)
def slow(*a, **k):
    time.sleep({sleep_in_step}); return orig(*a, **k)
t.pretrain_losses = slow
orig_json = c.atomic_write_json                # the checkpoint's trainer_state.json is written by snps3.checkpoint.save_checkpoint
def hanging(path, obj, *a, **k):
    if {hang_checkpoint_step!r} is not None and '.tmp_step_{hang_checkpoint_step}_' in str(path):
        pathlib.Path({str(marker)!r}).write_text('writing'); time.sleep(600)
    return orig_json(path, obj, *a, **k)
c.atomic_write_json = hanging
from snps3.cli import main
sys.exit(main({pretrain_args(bench, save_dir, *extra)!r}))
"""
    return subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(cond, proc, timeout=300):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()[-3000:]}"
        assert time.time() - t0 < timeout, "timed out waiting"
        time.sleep(0.1)


@pytest.mark.parametrize("where", ["between_steps", "during_checkpoint_write"])
def test_sigkill_then_resume_gives_identical_weights(tiny_bench, tmp_path, where):
    extra = ("train.max_steps=12", "train.save_every=4")
    ref = run_cli(pretrain_args(tiny_bench, tmp_path / "ref", *extra))
    assert ref.returncode == 0, ref.stderr[-3000:]
    run, marker = tmp_path / "run", tmp_path / "marker"
    if where == "between_steps":
        proc = _slow_run(tiny_bench, run, marker, extra)
        _wait(lambda: (run / "metrics.jsonl").exists() and len(metrics(run)) >= 6, proc)
    else:
        proc = _slow_run(tiny_bench, run, marker, extra, sleep_in_step=0, hang_checkpoint_step=8)
        _wait(marker.exists, proc)
    proc.send_signal(signal.SIGKILL); proc.wait()
    if where == "during_checkpoint_write":   # killed while step 8 was still being written into its temporary directory
        assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp_step_8_")]
    from snps3.checkpoint import list_checkpoints
    assert [p.name for p in list_checkpoints(run)] == ["step_4"]          # the half-written step_8 is not a checkpoint
    res = run_cli(pretrain_args(tiny_bench, run, *extra, "train.resume=auto"))
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = latest_weights(tmp_path / "ref"), latest_weights(run)
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k
    assert [r["step"] for r in metrics(run)] == list(range(1, 13))       # no duplicated or missing log rows


def test_nan_loss_stops_naming_step_and_keeps_last_good_checkpoint(tiny_bench, tmp_path):
    run = tmp_path / "run"
    r = run_cli(pretrain_args(tiny_bench, run, "train.max_steps=10", "train.save_every=3", "train.inject_nan_at=7"))
    assert r.returncode != 0
    assert "step 7" in r.stderr and "loss/" in r.stderr and "not finite" in r.stderr
    from snps3.checkpoint import list_checkpoints
    assert [p.name for p in list_checkpoints(run)] == ["step_3", "step_6"]
    assert "step_6" in r.stderr                                           # the error names the last good checkpoint
    assert all(torch.isfinite(v).all() for v in latest_weights(run).values())


class _Payload:
    "Unpickling this object runs code (creates a marker file)."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (Path.touch, (Path(self.marker),))


def test_pickle_checkpoint_with_payload_is_refused(tiny_bench, tmp_path):
    ck, marker = tmp_path / "ck", tmp_path / "PWNED"
    ck.mkdir()
    for name in ("model.safetensors", "trainer_state.safetensors"):
        (ck / name).write_bytes(pickle.dumps(_Payload(marker)))
    (ck / "trainer_state.json").write_text("{}")
    r = run_cli(pretrain_args(tiny_bench, tmp_path / "run", "train.max_steps=2", f"train.restart={ck}"))
    assert r.returncode != 0
    assert "not a valid safetensors file" in r.stderr and "never unpickles" in r.stderr
    assert not marker.exists()


def test_cross_residual_reset_zeroes_the_matching_output_on_restart(tiny_bench, tmp_path):
    """model.cross_residual with train.restart: the matching head's output layer starts at zero (the cross score starts as
    the dual score), so after one step it holds one optimizer step's worth; with model.cross_residual_reset=false it keeps
    the pre-trained weights."""
    pt = tmp_path / "pt"
    r = run_cli(pretrain_args(tiny_bench, pt, "train.max_steps=2"))
    assert r.returncode == 0, r.stderr[-3000:]
    before = latest_weights(pt)["match_head.2.weight"].abs().max().item()
    after = {}
    for reset in ("true", "false"):
        run = tmp_path / f"ft_{reset}"
        r = run_cli(pretrain_args(tiny_bench, run, "train.max_steps=1", f"train.restart={pt}", "model.cross_residual=20",
                                  f"model.cross_residual_reset={reset}"))
        assert r.returncode == 0, r.stderr[-3000:]
        after[reset] = latest_weights(run)["match_head.2.weight"].abs().max().item()
    assert after["true"] < 0.1 * before                      # zero + one AdamW step (~lr per entry)
    assert abs(after["false"] - before) < 0.5 * before       # the pre-trained layer, one step on
