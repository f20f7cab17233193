"""tools/gpu_check.py: on a host without CUDA it says so and exits 0; `--smoke` runs every check on CPU (tiny settings)."""
import json, subprocess, sys
from pathlib import Path

import pytest
import torch

from helpers import ENV

SCRIPT = Path(__file__).resolve().parents[1] / "tools/gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_cpu_host_says_it_needs_cuda_and_exits_0(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "gc.json")], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0 and "needs CUDA" in r.stdout
    assert not (tmp_path / "gc.json").exists()


def test_smoke_runs_every_check_on_cpu(tiny_bench, tmp_path):
    "The whole script on CPU (tiny recipe, gloo): every figure is measured and written."
    out = tmp_path / "gc.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--data", str(tiny_bench), "--steps", "5", "--out", str(out)],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    res = json.loads(out.read_text())
    assert res["recipe"]["flops_per_step"] > 0 and 0 < res["mfu"] < 1 and res["recipe"]["step_s"] > 0
    assert res["allreduce"]["correct"] and res["torchrun"]["ok"] and res["decode"]["clips_per_s_loader"] > 0
    assert "| achieved |" in r.stdout and "MFU" in r.stdout
