"""Helpers for the end-to-end tests: run the real CLI in a subprocess and read run directories."""
import json, os, subprocess, sys
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def pretrain_args(bench, save_dir, *extra):
    "CLI arguments of a tiny pre-training run on the tiny benchmark."
    return ["pretrain", "--config", "tiny_cpu", "--no-progress", f"data.root={bench}", f"train.save_dir={save_dir}", *extra]


def run_cli(args, timeout=600, **kw):
    "`python -m snps3.cli ARGS` in a subprocess."
    return subprocess.run([sys.executable, "-m", "snps3.cli", *args], capture_output=True, text=True, env=ENV, timeout=timeout, **kw)


def run_torchrun(args, nproc=2, timeout=900):
    "`torchrun --standalone --nproc_per_node N -m snps3.cli ARGS` (gloo on CPU)."
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "snps3.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def metrics(run_dir):
    "Training rows of metrics.jsonl (those with a `loss`)."
    rows = [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [r for r in rows if "loss" in r]


def latest_weights(run_dir):
    "Tensors of the newest checkpoint's model.safetensors."
    from safetensors.torch import load_file
    from snps3.checkpoint import list_checkpoints
    return load_file(str(list_checkpoints(run_dir)[-1] / "model.safetensors"))


NBS = Path(__file__).resolve().parents[1] / "nbs"


def papermill(nb, out, *params, timeout=600, retry_on_timeout=False):
    """Run `python -m papermill` on a workflow notebook under nbs/; fail with the tail of its output.
    `retry_on_timeout`: run once more if the first run hangs. Seen with nbs/explore.ipynb (its widget cells): the kernel sits
    idle in its event loop while papermill waits for the cell's reply (a lost kernel message, not our code); a second hang
    or any error still fails the test."""
    cmd = [sys.executable, "-m", "papermill", "--log-level", "WARNING", "-k", "python3", str(NBS / nb), str(out), *params]
    try: r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
    except subprocess.TimeoutExpired:
        if not retry_on_timeout: raise
        print(f"papermill {nb}: no reply after {timeout} s, running it again", file=sys.stderr)
        r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    return out


def results(run_dir, name="results.json"):
    "The JSON a run directory holds: results.json (evaluations, and the metrics the workflow notebooks record), or another file."
    p = Path(run_dir) / name
    assert p.is_file(), f"{p} was not written"
    return json.loads(p.read_text())
