"""Fault drill: `kill -9` a CLI pre-training run at several random moments (one of them while a checkpoint is being written),
resume each time with train.resume=auto, and compare the final weights byte for byte with an uninterrupted run."""
import json, os, random, signal, subprocess, sys, time
from pathlib import Path

from helpers import ENV, metrics, pretrain_args

EXTRA = ("train.max_steps=16", "train.save_every=2", "train.keep_checkpoints=2")


def cli(bench, run, log, *extra):
    "Start the real CLI (tiny_cpu: deterministic, dropout 0) as a separate process; stderr goes to `log`."
    args = pretrain_args(bench, run, *EXTRA, *extra)
    return subprocess.Popen([sys.executable, "-m", "snps3.cli", *args], env=ENV, stdout=subprocess.DEVNULL, stderr=open(log, "w"))


def rows(run: Path) -> int:
    "Training rows logged so far."
    p = run / "metrics.jsonl"
    return p.read_text().count('"loss"') if p.exists() else 0


def writing_checkpoint(run: Path) -> bool:
    "A checkpoint write is in progress (its temporary directory exists)."
    ck = run / "checkpoints"
    return ck.is_dir() and any(p.name.startswith(".tmp_step_") for p in ck.iterdir())


def kill_when(proc, cond, timeout=900) -> bool:
    "SIGKILL `proc` as soon as `cond()` holds (polled every ms); False when the run ended first."
    t0 = time.time()
    while proc.poll() is None:
        try: hit = cond()
        except OSError: hit = False                      # a directory vanished between listing and reading
        if hit:
            os.kill(proc.pid, signal.SIGKILL); proc.wait()
            return True
        assert time.time() - t0 < timeout, "run neither finished nor reached the kill point"
        time.sleep(0.001)
    return False


def final_weights(run: Path) -> bytes:
    from snps3.checkpoint import list_checkpoints
    return (list_checkpoints(run)[-1] / "model.safetensors").read_bytes()


def test_kill9_at_random_moments_then_resume_gives_identical_weights(tiny_bench, tmp_path):
    """Moments: while a checkpoint is being written (twice), at a random step (after a random number of logged rows, plus a random
    delay of up to 0.3 s: inside a step, between steps, or in a write), and during start-up."""
    rng = random.Random(20261203)
    ref = cli(tiny_bench, tmp_path / "ref", tmp_path / "ref.log")                  # the uninterrupted run, alongside the drill
    run, kills, during_write = tmp_path / "run", 0, 0
    plan = ["write", ("after_rows", rng.randint(1, 4), rng.uniform(0, 0.3)), ("startup", rng.uniform(0.2, 2.0)), "write",
            ("after_rows", rng.randint(1, 3), rng.uniform(0, 0.3))]
    for i, moment in enumerate(plan):
        log = tmp_path / f"drill{i}.log"
        proc, t0, n0 = cli(tiny_bench, run, log, *(["train.resume=auto"] if i else [])), time.time(), rows(run)
        if moment == "write": cond = lambda: writing_checkpoint(run)
        elif moment[0] == "startup": cond = lambda: time.time() - t0 >= moment[1]
        else:
            seen = {}
            def cond():
                if "t" not in seen and rows(run) >= n0 + moment[1]: seen["t"] = time.time()
                return "t" in seen and time.time() - seen["t"] >= moment[2]
        if kill_when(proc, cond):
            kills += 1; during_write += moment == "write" and writing_checkpoint(run)
        else: assert proc.returncode == 0, log.read_text()[-3000:]
    last = cli(tiny_bench, run, tmp_path / "last.log", "train.resume=auto")
    assert last.wait(timeout=900) == 0, (tmp_path / "last.log").read_text()[-3000:]
    assert ref.wait(timeout=900) == 0, (tmp_path / "ref.log").read_text()[-3000:]
    assert kills >= 4 and during_write >= 1, (kills, during_write)                # the drill really interrupted the run
    assert final_weights(run) == final_weights(tmp_path / "ref")                  # byte for byte
    assert [r["step"] for r in metrics(run)] == list(range(1, 17))                # no duplicated or missing log rows
    assert json.loads((run / "summary.json").read_text())["last_checkpoint"].endswith("step_16")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_14", "step_16"]   # no half-written leftovers
