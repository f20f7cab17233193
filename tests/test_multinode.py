"""Multi-node torchrun on this machine: two node processes meet through c10d rendezvous on localhost and train exactly like
one process; a rank that dies ends the whole job with an error naming it, without a hang."""
import os, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest

from helpers import ENV, metrics, pretrain_args, run_cli

TWO_RANKS = ()   # extra overrides of every 2-rank run (none: the defaults of tiny_cpu)
LOSSES = ["loss/vtc", "loss/lvwm", "loss/mlm", "loss/mlm_text", "loss/cross_match", "loss/itm", "loss"]

CRASH = '''
import os, sys
import snps3.train as t
orig = t.pretrain_losses
def crashing(model, batch, ctx):
    if ctx.step == 3 and os.environ["RANK"] == "1": os._exit(17)      # a rank dies in the middle of step 3
    return orig(model, batch, ctx)
t.pretrain_losses = crashing
from snps3.cli import main
sys.exit(main(sys.argv[1:]))
'''

HANG = CRASH.replace("os._exit(17)", "time.sleep(300)").replace("import os, sys", "import os, sys, time")  # a rank stuck (not dead)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def run_nodes(args, logs: Path, script=None, nnodes=2, timeout=600):
    "Run `nnodes` torchrun agents (1 process each) that meet at localhost:PORT (c10d); [(returncode, log text)] per node."
    target = [str(script)] if script else ["-m", "snps3.cli"]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", "--nproc_per_node=1", "--rdzv_backend=c10d",
           f"--rdzv_endpoint=localhost:{free_port()}", "--rdzv_id=snps3-test", "--max_restarts=0", *target, *args]
    logs.mkdir(parents=True, exist_ok=True)
    files = [open(logs / f"node{n}.log", "w") for n in range(nnodes)]
    procs = [subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, text=True, env=ENV) for f in files]
    deadline = time.time() + timeout
    try:
        for p in procs: p.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        for p in procs: p.kill()
        pytest.fail(f"the job hung: still running after {timeout} s ({logs})")
    finally:
        for f in files: f.close()
    return [(p.returncode, (logs / f"node{n}.log").read_text()) for n, p in enumerate(procs)]


def test_two_nodes_equal_one_process(tiny_bench, tmp_path):
    "torchrun --nnodes 2 --nproc_per_node 1 (c10d rendezvous on localhost) == 1 process: every loss within 1e-5 over 10 steps."
    one = run_cli(pretrain_args(tiny_bench, tmp_path / "one", *TWO_RANKS))
    assert one.returncode == 0, one.stderr[-3000:]
    nodes = run_nodes(pretrain_args(tiny_bench, tmp_path / "two", *TWO_RANKS), tmp_path / "logs")
    for rc, log in nodes: assert rc == 0, log[-4000:]
    m1, m2 = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert len(m1) == len(m2) == 10
    for a, b in zip(m1, m2):
        for k in LOSSES: assert abs(a[k] - b[k]) < 1e-5, (a["step"], k, a[k], b[k])
    import json
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2


def test_a_crashed_rank_ends_the_job_with_a_clear_error(tiny_bench, tmp_path):
    "Rank 1 dies in step 3: both node processes exit non-zero within the timeout, and the error names rank 1 and its exit code."
    script = tmp_path / "crash.py"; script.write_text(CRASH)
    t0 = time.time()
    nodes = run_nodes(pretrain_args(tiny_bench, tmp_path / "run", *TWO_RANKS), tmp_path / "logs", script=script, timeout=300)
    assert all(rc != 0 for rc, _ in nodes), [rc for rc, _ in nodes]
    logs = "\n".join(log for _, log in nodes)
    assert "crash.py FAILED" in logs and "exitcode  : 17" in logs and "rank      : 1" in logs, logs[-4000:]
    print(f"job ended {time.time() - t0:.0f} s after the start")


def test_a_stuck_rank_ends_the_job_after_dist_timeout_s(tiny_bench, tmp_path):
    """Rank 1 stops responding in step 3 (alive, never reaching the next collective): with train.dist_timeout_s=20 rank 0's
    collective fails after 20 s and torchrun ends the job with an error, instead of waiting the default 10-30 minutes.
    One node with 2 processes: its agent stops the stuck rank once rank 0 fails (across nodes, the scheduler does that,
    e.g. `srun --kill-on-bad-exit`)."""
    script = tmp_path / "hang.py"; script.write_text(HANG)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max_restarts=0", str(script),
           *pretrain_args(tiny_bench, tmp_path / "run", *TWO_RANKS, "train.dist_timeout_s=20")]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, start_new_session=True)
    try: out, _ = proc.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        proc.terminate()                                                   # torchrun stops its workers (in their own sessions)
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the job hung: still running after 200 s")
    assert proc.returncode != 0
    assert "hang.py FAILED" in out and "Timed out" in out, out[-4000:]
    print(f"job ended {time.time() - t0:.0f} s after the start")


def test_sbatch_template_runs_torchrun(tiny_bench, tmp_path):
    "tools/slurm/pretrain.sbatch under stand-in `srun` / `scontrol` (one node, 2 processes on CPU) trains and writes its run."
    bin_ = tmp_path / "bin"; bin_.mkdir()
    (bin_ / "scontrol").write_text("#!/bin/sh\necho localhost\n")
    (bin_ / "srun").write_text('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n')   # drop srun's options, run the command
    for f in bin_.iterdir(): f.chmod(0o755)
    import os
    env = {**ENV, "PATH": f"{bin_}{os.pathsep}{ENV['PATH']}", "SLURM_JOB_NODELIST": "localhost", "SLURM_NNODES": "1",
           "SLURM_GPUS_ON_NODE": "2", "SLURM_JOB_ID": "42", "SNPS3_RDZV_PORT": str(free_port())}
    sbatch = Path(__file__).resolve().parents[1] / "tools/slurm/pretrain.sbatch"
    r = subprocess.run(["bash", str(sbatch), "tiny_cpu", f"data.root={tiny_bench}", f"train.save_dir={tmp_path / 'run'}", "train.max_steps=2", *TWO_RANKS],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    import json
    assert [x["step"] for x in metrics(tmp_path / "run")] == [1, 2]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["world_size"] == 2
