"""GPU readiness check (`make gpu-check`): is this CUDA host ready for the GPU recipes?

On a CUDA host it measures, in one run:
  1. the bf16 matmul peak of GPU 0 (the denominator of MFU),
  2. the base recipe (webvid_videoswin: Video Swin-B + a BERT-base-sized shared encoder, both random init, bf16,
     all-pairs cross matching) for a few steps on GPU 0: FLOPs per step (torch's FlopCounterMode), step time, achieved
     FLOP/s and MFU, peak memory; the batch halves on out-of-memory until it fits,
  3. NCCL on all local GPUs: all-reduce bus bandwidth and correctness, then `torchrun -m snps3.cli pretrain` for a few
     tiny steps with the NCCL backend (every collective of the real training step on GPU tensors),
  4. decode throughput: clips/s of the pre-training dataset at 224 px, in-process and with loader workers.
On a host without CUDA it says so and exits 0. `--smoke` runs the same code on CPU with tiny settings (gloo instead of
NCCL), so the script itself is tested where there is no GPU.

    python tools/gpu_check.py [--data data/synthetic] [--steps 8] [--batch-size 32] [--out reports/gpu_check.json]
"""
import argparse, json, os, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    "A free TCP port on localhost."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def matmul_peak(device: torch.device, n: int, iters: int) -> float:
    "Achieved FLOP/s of an n x n x n bf16 matmul (the best any kernel of this run can hope for)."
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3): a @ b
    _sync(device); t0 = time.perf_counter()
    for _ in range(iters): a @ b
    _sync(device)
    return 2 * n ** 3 * iters / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda": torch.cuda.synchronize(device)


def recipe_config(a, data: Path, save_dir: Path, batch: int, steps: int):
    "The base GPU recipe with random-init backbones (nothing to download) and a BERT-base-sized shared encoder."
    from snps3.config import load_config
    if a.smoke:
        return load_config("tiny_cpu", params={"data.root": str(data), "data.batch_size": batch, "train.max_steps": steps,
                                                "train.save_dir": str(save_dir), "train.device": "cpu",
                                                "train.save_every": 0, "train.log_every": 1})
    return load_config(a.config, params={
        "data.root": str(data), "data.train_ann": "pretrain.jsonl", "data.val_ann": "", "data.batch_size": batch,
        "data.num_workers": min(8, os.cpu_count() or 1), "model.text_model": "tiny", "model.text_pretrained": False,
        "model.tiny_hidden_size": 768, "model.tiny_num_layers": 12, "model.tiny_num_heads": 12,   # = bert-base, random init
        "model.vision_pretrained": False, "train.max_steps": steps, "train.warmup_steps": 1, "train.log_every": 1,
        "train.eval_every": 0, "train.save_every": 0, "train.keep_checkpoints": 1, "train.save_dir": str(save_dir),
        "train.device": "cuda:0", "train.amp": "bf16"})


def flops_per_step(a, data: Path, tmp: Path, batch: int) -> float:
    "FLOPs of one optimizer step (forward + backward of every loss), counted by torch's FlopCounterMode."
    from torch.utils.flop_counter import FlopCounterMode
    from snps3.train import train
    counter = FlopCounterMode(display=False)
    with counter: train(recipe_config(a, data, tmp / f"flops_b{batch}", batch, 1), progress=False)
    return float(counter.get_total_flops())


def step_seconds(run_dir: Path, batch: int, skip: int) -> float:
    "Median seconds per step after `skip` warm-up steps, from metrics.jsonl (its samples_per_s is cumulative)."
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    rows = [r for r in rows if "samples_per_s" in r]
    elapsed = [r["step"] * batch / r["samples_per_s"] for r in rows]          # seconds since the first step started
    steps = [t1 - t0 for t0, t1 in zip(elapsed[skip:], elapsed[skip + 1:])]
    if not steps: raise RuntimeError(f"{run_dir}: too few logged steps to time (raise --steps)")
    return statistics.median(steps)


def recipe_check(a, data: Path, tmp: Path, device: torch.device) -> dict:
    "Train the recipe a few steps; halve the batch on out-of-memory. FLOP/s, MFU and peak memory of the run that fit."
    from snps3.train import train
    batch = 8 if a.smoke else a.batch_size        # the tiny benchmark has 12 clips
    while True:
        try:
            if device.type == "cuda": torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(device)
            run = tmp / f"recipe_b{batch}"
            summary = train(recipe_config(a, data, run, batch, a.steps), progress=False)
            break
        except torch.OutOfMemoryError:
            if batch <= 1: raise
            print(f"  batch {batch}: out of memory, trying {batch // 2}", flush=True); batch //= 2
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    sec = step_seconds(run, batch, skip=min(2, a.steps - 2))
    flops = flops_per_step(a, data, tmp, batch)
    return {"batch": batch, "amp": recipe_config(a, data, run, batch, 1).train.amp, "steps": summary["steps"], "step_s": sec, "samples_per_s": batch / sec, "flops_per_step": flops,
            "achieved_flops": flops / sec, "peak_mem_gib": peak_mem}


def _allreduce_worker(rank: int, world: int, port: int, backend: str, mib: int, out: str) -> None:
    "One rank of the all-reduce check: correctness, then bus bandwidth over 20 iterations."
    import torch.distributed as dist
    dev = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if dev.type == "cuda": torch.cuda.set_device(dev)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        x = torch.full((mib * 2**18,), float(rank + 1), device=dev)          # mib MiB of fp32
        dist.all_reduce(x); ok = bool((x == world * (world + 1) / 2).all())
        for _ in range(3): dist.all_reduce(x)
        _sync(dev); t0 = time.perf_counter()
        for _ in range(20): dist.all_reduce(x)
        _sync(dev); t = (time.perf_counter() - t0) / 20
        if rank == 0:
            alg = x.numel() * 4 / t
            Path(out).write_text(json.dumps({"world": world, "mib": mib, "correct": ok, "seconds": t, "algbw_gbs": alg / 1e9,
                                             "busbw_gbs": alg * 2 * (world - 1) / world / 1e9}))
    finally: dist.destroy_process_group()


def allreduce_check(world: int, backend: str, mib: int, tmp: Path) -> dict:
    "All-reduce over `world` local processes (one per GPU with NCCL)."
    import torch.multiprocessing as mp
    out = tmp / "allreduce.json"
    mp.spawn(_allreduce_worker, args=(world, free_port(), backend, mib, str(out)), nprocs=world, join=True)
    return json.loads(out.read_text())


def torchrun_check(world: int, data: Path, tmp: Path, device: str, timeout: int = 600) -> dict:
    "`torchrun -m snps3.cli pretrain` (tiny, 3 steps) on `world` processes: NCCL on GPUs, gloo on CPU."
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}", "-m", "snps3.cli",
           "pretrain", "--config", "tiny_cpu", "--no-progress", f"data.root={data}", f"train.save_dir={tmp / 'torchrun'}",
           "train.max_steps=3", f"train.device={device}", f"data.batch_size={4 * world}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.time()
    try: r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired: return {"ok": False, "error": f"timed out after {timeout} s (a hang in a collective?)"}
    res = {"ok": r.returncode == 0, "world": world, "seconds": round(time.time() - t0, 1)}
    if r.returncode: res["error"] = _first_error(r.stderr)
    return res


def _first_error(stderr: str) -> str:
    "The exception line of the first failing rank (torchrun prints its own summary after it)."
    lines = [l for l in stderr.splitlines() if l.strip()]
    errs = [l for l in lines if l.startswith("[rank") and ("Error" in l or "Exception" in l)]
    return (errs or lines or ["(no output)"])[0][:500]


def decode_check(data: Path, image_size: int, workers: int, n: int) -> dict:
    "Clips/s of the pre-training dataset (4 clips x 2 frames, decord): in-process, and through a DataLoader with workers."
    from torch.utils.data import DataLoader
    from snps3.data.datasets import PretrainDataset, TextSide, collate_pretrain, load_annotations
    from snps3.data.text import load_tokenizer
    tok = load_tokenizer("minilm")
    ds = PretrainDataset(load_annotations(data / "pretrain.jsonl"), data, TextSide(tok, torch.ones(len(tok), dtype=torch.bool), {}),
                         4, 2, image_size, True, 0)
    n = min(n, len(ds))
    t0 = time.perf_counter()
    for i in range(n): ds[i]
    single = n / (time.perf_counter() - t0)
    dl = DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers, collate_fn=collate_pretrain)
    t0, got = time.perf_counter(), 0
    for b in dl: got += b["video"].shape[0]                                   # a full pass, worker start-up included
    return {"image_size": image_size, "clips_per_s_1proc": single, "workers": workers, "clips_per_s_loader": got / (time.perf_counter() - t0)}


def ensure_data(data: Path, tmp: Path, size: str) -> Path:
    "The benchmark at `data`, or a freshly generated one in `tmp`."
    if (data / "pretrain.jsonl").exists(): return data
    from snps3.data.synthetic import make_synthetic
    out = tmp / f"bench_{size}"; print(f"{data} not found: generating the {size} benchmark in {out}", flush=True)
    make_synthetic(out, seed=0, size=size)
    return out


def report(res: dict) -> str:
    "The figures as a markdown table."
    r, ar, tr, dc = res["recipe"], res["allreduce"], res["torchrun"], res["decode"]
    rows = [("device", res["device"]), ("bf16 matmul peak", f"{res['matmul_peak_flops'] / 1e12:.1f} TFLOP/s"),
            ("recipe", f"{res['config']} (batch {r['batch']}, {r['steps']} steps, amp {r['amp']})"),
            ("step time", f"{r['step_s']:.3f} s ({r['samples_per_s']:.1f} samples/s)"),
            ("FLOPs per step", f"{r['flops_per_step'] / 1e12:.2f} TFLOP"),
            ("achieved", f"{r['achieved_flops'] / 1e12:.1f} TFLOP/s = MFU {100 * res['mfu']:.1f} % of the measured matmul peak"),
            ("peak memory", f"{r['peak_mem_gib']:.1f} GiB"),
            (f"all-reduce ({ar['world']} proc, {ar['mib']} MiB)", f"{'correct' if ar['correct'] else 'WRONG SUM'}, bus {ar['busbw_gbs']:.1f} GB/s"),
            (f"torchrun pretrain ({tr.get('world', '?')} proc, {res['backend']})", "ok" if tr["ok"] else "FAILED: " + tr["error"][:300]),
            (f"decode at {dc['image_size']} px", f"{dc['clips_per_s_1proc']:.1f} clips/s in-process, {dc['clips_per_s_loader']:.1f} with {dc['workers']} workers (a full pass)")]
    return "| check | result |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data/synthetic", help="benchmark root (generated in a temp dir if missing)")
    ap.add_argument("--config", default="webvid_videoswin", help="the recipe to time (default webvid_videoswin)")
    ap.add_argument("--steps", type=int, default=8, help="training steps of the timed run (the first 2 are warm-up)")
    ap.add_argument("--batch-size", type=int, default=32, help="global batch on GPU 0 (halved on out-of-memory)")
    ap.add_argument("--out", type=Path, default=ROOT / "reports/gpu_check.json")
    ap.add_argument("--smoke", action="store_true", help="run every check on CPU with tiny settings (tests the script)")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available() and not a.smoke:
        print(f"gpu-check needs CUDA: torch {torch.__version__} sees no GPU on this host, so nothing was checked. "
              "Run `make gpu-check` on a CUDA host (see README, Scale out).")
        return 0
    device = torch.device("cpu" if a.smoke else "cuda:0")
    world, backend = (2, "gloo") if a.smoke else (torch.cuda.device_count(), "nccl")
    with tempfile.TemporaryDirectory(prefix="snps3_gpu_check_") as t:
        tmp = Path(t)
        data = ensure_data(a.data, tmp, "tiny" if a.smoke else "small")
        res = {"device": "cpu (smoke)" if a.smoke else f"{world} x {torch.cuda.get_device_name(0)}", "torch": torch.__version__,
               "config": "tiny_cpu" if a.smoke else a.config, "backend": backend}
        print("bf16 matmul ...", flush=True); res["matmul_peak_flops"] = matmul_peak(device, 256 if a.smoke else 8192, 5 if a.smoke else 50)
        print("recipe ...", flush=True); res["recipe"] = recipe_check(a, data, tmp, device)
        res["mfu"] = res["recipe"]["achieved_flops"] / res["matmul_peak_flops"]
        print("all-reduce ...", flush=True); res["allreduce"] = allreduce_check(world, backend, 4 if a.smoke else 256, tmp)
        print("torchrun ...", flush=True); res["torchrun"] = torchrun_check(world, data, tmp, "cpu" if a.smoke else "cuda")
        print("decode ...", flush=True); res["decode"] = decode_check(data, 32 if a.smoke else 224, 2 if a.smoke else min(8, os.cpu_count() or 1), 16 if a.smoke else 128)
    a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(json.dumps(res, indent=2))
    print(report(res)); print(f"\nwritten to {a.out}")
    return 0 if res["allreduce"]["correct"] and res["torchrun"]["ok"] else 1


if __name__ == "__main__": sys.exit(main())
