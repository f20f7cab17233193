"""Benchmark the pre-training step on CPU: step time, samples/s and achieved FLOP/s against a dense-matmul peak
measured in the same run (the machine is noisy: compare ratios, not absolute numbers across runs).

    python data_prep/bench_train.py [--data data/synthetic] [--config demo_cpu] [--threads 2] [--quick] [--json OUT]

It prints:
  1. the fp32 `torch.mm` peak (GFLOP/s, best and median of a few repeats of square matrices);
  2. the demo config's step time (forward + backward + clip + AdamW step, median of the timed steps) and its achieved
     FLOP/s as a share of that peak; FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` over one full
     step (matmuls, convolutions incl. depthwise ones as the counter counts them, CPU SDPA attention matmuls added here;
     softmax, norms, activations and the optimizer's elementwise work are not counted);
  3. `loss.cross_match=all_pairs` against `hard_k` at batch 32, same model;
  4. step time against batch size (default 4, 8, 16, 32) for the demo config -> samples/s;
  5. the demo config again at `--compare-threads` (default 1) threads: on a shared machine, OpenMP threads that equal
     the core count can lose badly to a single thread.
A short 1024^2 matmul probe runs right before every timed step, so each row also gets a contention-adjusted ratio.
Every row is measured on batches pre-loaded from the real `BatchStream` (the loader's time per batch is printed on its
own); the step is the one `snps3.train.train` runs: `pretrain_losses` -> `check_finite` -> backward -> grad clip -> AdamW.
The first step of each row runs under the FLOP counter and doubles as warm-up; `--warmup` more plain steps follow
(none for the all_pairs row, whose step is long), then `--steps` timed ones. The benchmark data (`make_synthetic --size small`) is generated when `--data` lacks it.
"""
import argparse, json, os, resource, statistics, sys, tempfile, time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count, sdpa_backward_flop_count


# ---------------------------------------------------------------- setup
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/synthetic"), help="benchmark root (generated with --size small when missing)")
    ap.add_argument("--config", default="demo_cpu", help="shipped config name or .yml path (default demo_cpu)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads (default: all cores)")
    ap.add_argument("--compare-threads", type=int, default=1, help="also time the demo config at this many threads (0: skip)")
    ap.add_argument("--batch-sizes", default="4,8,16,32", help="comma-separated batch sizes for the sweep")
    ap.add_argument("--match-batch", type=int, default=32, help="batch size of the all_pairs vs hard_k comparison")
    ap.add_argument("--warmup", type=int, default=1, help="plain warm-up steps after the FLOP-counting step")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per row (median reported)")
    ap.add_argument("--mm-sizes", default="1024,2048", help="square matmul sizes for the peak")
    ap.add_argument("--mm-repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="no extra warm-up, sweep 8,16,32 only, 3 matmul repeats, no thread comparison")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args(argv)
    if a.quick: a.warmup, a.batch_sizes, a.mm_repeats, a.compare_threads = 0, "8,16,32", 3, 0
    a.batch_sizes = [int(x) for x in a.batch_sizes.split(",")]
    a.mm_sizes = [int(x) for x in a.mm_sizes.split(",")]
    if a.steps < 1: ap.error("--steps must be >= 1")
    return a


def ensure_data(root: Path) -> None:
    "Generate the small embedded benchmark into `root` when its pre-training annotations are missing."
    if (root / "pretrain.jsonl").exists(): return
    from snps3.data.synthetic import make_synthetic
    print(f"{root}/pretrain.jsonl not found: generating the small benchmark there ...", flush=True)
    t0 = time.perf_counter(); make_synthetic(root, seed=0, size="small")
    print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)


def make_cfg(config: str, data: Path, *overrides: str):
    "The benchmark config: `config` on `data`, CPU, no in-training evaluation, plus `overrides`."
    from snps3.config import load_config
    return load_config(config, overrides=[f"data.root={data}", "train.device=cpu", "train.eval_every=0", *overrides])


# ---------------------------------------------------------------- peak
def matmul_peak(sizes: list[int], repeats: int) -> dict:
    "fp32 torch.mm GFLOP/s of square matrices (2n^3 FLOPs each): all samples, best and median."
    samples = []
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)                                                   # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter(); torch.mm(a, b); dt = time.perf_counter() - t0
            samples.append(2 * n ** 3 / dt / 1e9)
    return {"best_gflops": max(samples), "median_gflops": statistics.median(samples), "samples": [round(s, 1) for s in samples]}


def matmul_probe(n: int = 1024, repeats: int = 2) -> float:
    "A short contention probe taken just before each timed step: best fp32 mm GFLOP/s of `repeats` n x n products."
    return matmul_peak([n], repeats)["best_gflops"]


# ---------------------------------------------------------------- FLOP counting
def _sdpa_cpu_fwd(query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)

def _sdpa_cpu_bwd(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)

def flop_counter() -> FlopCounterMode:
    "A FlopCounterMode that also counts the CPU flash-attention kernels (absent from torch's registry)."
    aten = torch.ops.aten
    extra = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_fwd,
             aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_bwd}
    return FlopCounterMode(display=False, custom_mapping=extra)


def visual_flops(counts: dict) -> int:
    "FLOPs attributed to the visual encoder module (name as FlopCounterMode's module tracker reports it)."
    return sum(sum(v.values()) for k, v in counts.items() if k.split(".")[-1] in ("VideoEncoder", "visual"))


# ---------------------------------------------------------------- model, data, step
def build_model(cfg):
    "The model and AdamW exactly as `train()` builds them (seeded, train mode)."
    from snps3.core import seed_everything
    from snps3.models.snp import SNPModel
    from snps3.train import param_groups
    seed_everything(cfg.train.seed)
    model = SNPModel(cfg).train()
    opt = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2))
    return model, opt


def load_batches(cfg, model, run_dir: Path, n: int) -> tuple[list[dict], float, object]:
    "`n` micro-batches from the real data path (`build_pretrain_data` + `BatchStream`), the loader's seconds per batch, the data."
    from snps3.distributed import setup_distributed
    from snps3.train import build_pretrain_data, BatchStream
    data = build_pretrain_data(cfg, model, run_dir, setup_distributed(torch.device("cpu")))  # words mined into run_dir once
    stream = BatchStream(data)
    t0 = time.perf_counter(); batches = [stream.next() for _ in range(n)]
    return batches, (time.perf_counter() - t0) / n, data


def step_context(cfg, data):
    "The `StepContext` `train()` builds (one process, no MoCo queue)."
    from snps3.distributed import setup_distributed
    from snps3.objectives import StepContext
    tok = data.text.tokenizer
    return StepContext(cfg, setup_distributed(torch.device("cpu")), 0, data.text.significant, tok.mask_token_id,
                       torch.tensor(tok.all_special_ids))


def train_step(model, opt, batch: dict, ctx, step: int) -> float:
    "One optimizer step as `train()` runs it with grad_accum=1, amp=none, one process; returns the loss."
    from snps3.objectives import pretrain_losses
    from snps3.train import check_finite, get_lr
    tc = ctx.cfg.train
    for g in opt.param_groups: g["lr"] = get_lr(step, tc)
    ctx.step = step
    total, losses, _ = pretrain_losses(model, batch, ctx)
    check_finite(step, losses, total, ctx.dist, None)
    total.backward()
    if tc.grad_clip: torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
    opt.step(); opt.zero_grad(set_to_none=True)
    return total.item()


def time_visual(model, batch: dict, repeats: int = 2) -> float:
    "Best seconds of the visual encoder's forward alone on `batch` (frozen backbone: that is all it costs per step)."
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter(); model.encode_video(batch["video"], batch["clip_mask"]); best = min(best, time.perf_counter() - t0)
    return best


def bench_row(label: str, cfg, model, opt, run_dir: Path, warmup: int, steps: int) -> dict:
    "Count FLOPs on the first step, warm up, time `steps` steps; the row's figures."
    batches, load_s, data = load_batches(cfg, model, run_dir, 1 + warmup + steps)
    ctx = step_context(cfg, data)
    counter = flop_counter()
    with counter: loss = train_step(model, opt, batches[0], ctx, 0)
    flops, vis_flops = counter.get_total_flops(), visual_flops(counter.get_flop_counts())
    for i in range(warmup): train_step(model, opt, batches[1 + i], ctx, 1 + i)
    times, probes = [], []
    for i in range(1 + warmup, 1 + warmup + steps):
        probes.append(matmul_probe())
        t0 = time.perf_counter(); loss = train_step(model, opt, batches[i], ctx, i); times.append(time.perf_counter() - t0)
    B = batches[0]["input_ids"].shape[0]
    med = statistics.median(times)
    return {"label": label, "batch": B, "cross_match": cfg.loss.cross_match, "threads": torch.get_num_threads(), "step_s": med,
            "min_step_s": min(times), "times_s": [round(t, 3) for t in times], "probe_gflops": [round(p, 1) for p in probes],
            "frac_probe": statistics.median(flops / t / 1e9 / p for t, p in zip(times, probes)),
            "samples_per_s": B / med, "gflop_per_step": flops / 1e9,
            "visual_gflop": vis_flops / 1e9, "achieved_gflops": flops / med / 1e9, "visual_fwd_s": time_visual(model, batches[-1]),
            "loader_s_per_batch": load_s, "text_len": batches[0]["input_ids"].shape[1], "loss": loss}


# ---------------------------------------------------------------- report
def print_table(rows: list[dict], peak: float) -> None:
    head = (f"{'row':32s} {'thr':>3s} {'B':>3s} {'step s':>7s} {'min s':>6s} {'smp/s':>6s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'/peak':>6s} "
            f"{'best/pk':>7s} {'probe':>6s} {'/probe':>6s} {'vis fwd s':>9s} {'vis GF':>6s} {'load s':>6s}")
    print(head); print("-" * len(head))
    for r in rows:
        print(f"{r['label']:32s} {r['threads']:3d} {r['batch']:3d} {r['step_s']:7.3f} {r['min_step_s']:6.3f} {r['samples_per_s']:6.2f} "
              f"{r['gflop_per_step']:7.1f} {r['achieved_gflops']:8.1f} {r['achieved_gflops'] / peak:6.3f} {r['gflop_per_step'] / r['min_step_s'] / peak:7.3f} "
              f"{statistics.median(r['probe_gflops']):6.1f} {r['frac_probe']:6.3f} {r['visual_fwd_s']:9.3f} {r['visual_gflop']:6.2f} "
              f"{r['loader_s_per_batch']:6.2f}")


def main(argv=None) -> dict:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    print(f"torch {torch.__version__}, torch.get_num_threads()={torch.get_num_threads()}, os.cpu_count()={os.cpu_count()}, "
          f"config {a.config}, data {a.data}, warmup 1 (FLOP-count) + {a.warmup}, timed {a.steps}", flush=True)
    ensure_data(a.data)
    peak0 = matmul_peak(a.mm_sizes, a.mm_repeats)
    print(f"[1] fp32 torch.mm peak (start): best {peak0['best_gflops']:.1f} GFLOP/s, median {peak0['median_gflops']:.1f} "
          f"(sizes {a.mm_sizes}, samples {peak0['samples']})", flush=True)
    cfg = make_cfg(a.config, a.data)
    model, opt = build_model(cfg)
    pc = model.param_counts()
    print(f"model: {cfg.model.text_model} + {cfg.model.vision_backbone} (freeze_vision={cfg.model.freeze_vision}), "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.1f} M trainable of {pc['total'] / 1e6:.1f} M; "
          f"{cfg.data.n_clips} clips x {cfg.data.num_frames} frame x {cfg.data.image_size}px; losses: masking={cfg.loss.masking} "
          f"lvwm={cfg.loss.lvwm} cross_match={cfg.loss.cross_match}(k={cfg.loss.hard_k}) itm={cfg.loss.itm} mlm(w={cfg.loss.w_mlm}) "
          f"mlm_text={cfg.loss.mlm_text} vtc={cfg.loss.vtc}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as run_dir:
        run_dir = Path(run_dir)
        sweep = sorted(set(a.batch_sizes) | {cfg.data.batch_size, a.match_batch})
        for B in sweep:
            c = make_cfg(a.config, a.data, f"data.batch_size={B}")
            rows.append(bench_row(f"{a.config} hard_k B={B}", c, model, opt, run_dir, a.warmup, a.steps))
            print(f"  done {rows[-1]['label']}: {rows[-1]['step_s']:.3f} s/step ({time.perf_counter() - t_start:.0f} s elapsed)", flush=True)
        c = make_cfg(a.config, a.data, f"data.batch_size={a.match_batch}", "loss.cross_match=all_pairs")
        rows.append(bench_row(f"{a.config} all_pairs B={a.match_batch}", c, model, opt, run_dir, 0, a.steps))  # its FLOP step warms up enough
        print(f"  done {rows[-1]['label']}: {rows[-1]['step_s']:.3f} s/step ({time.perf_counter() - t_start:.0f} s elapsed)", flush=True)
        if a.compare_threads and a.compare_threads != a.threads:
            torch.set_num_threads(a.compare_threads)
            rows.append(bench_row(f"{a.config} hard_k B={cfg.data.batch_size} {a.compare_threads}thr", cfg, model, opt, run_dir, a.warmup, a.steps))
            torch.set_num_threads(a.threads)
            print(f"  done {rows[-1]['label']}: {rows[-1]['step_s']:.3f} s/step ({time.perf_counter() - t_start:.0f} s elapsed)", flush=True)
    peak1 = matmul_peak(a.mm_sizes, a.mm_repeats)
    peak = max(peak0["best_gflops"], peak1["best_gflops"])
    print(f"[1] fp32 torch.mm peak (end):   best {peak1['best_gflops']:.1f} GFLOP/s, median {peak1['median_gflops']:.1f}; "
          f"peak used below = best of both = {peak:.1f} GFLOP/s\n")
    print("FLOPs: torch.utils.flop_counter.FlopCounterMode over one full step (forward + backward + optimizer). Counted: mm/addmm/bmm,\n"
          "convolutions (depthwise ones included only as the counter counts them: k*k*2 per output element, tiny), and the\n"
          "CPU SDPA attention matmuls (added here via custom_mapping; torch's registry lacks the CPU flash kernels).\n"
          "Not counted: attention softmax, LayerNorm, GELU, dropout, losses, AdamW. 'vis fwd s' = visual encoder forward alone.\n"
          "/peak: achieved (median step) / best matmul GFLOP/s of the run; best/pk: the same for the fastest step; probe: median of the 1024^2 mm probes (GFLOP/s, same thread count)\n"
          "taken right before each timed step (contention gauge); /probe: median over steps of achieved / that step's probe.\n")
    print_table(rows, peak)
    by = {(r["cross_match"], r["batch"]): r for r in rows if r["threads"] == a.threads}
    demo, hk, ap = by[("hard_k", cfg.data.batch_size)], by[("hard_k", a.match_batch)], by[("all_pairs", a.match_batch)]
    print(f"\n[2] demo config ({a.config}, B={demo['batch']}): {demo['step_s']:.3f} s/step, {demo['samples_per_s']:.2f} samples/s, "
          f"{demo['gflop_per_step']:.1f} GFLOP/step -> {demo['achieved_gflops']:.1f} GFLOP/s = {demo['achieved_gflops'] / peak:.2f} of the "
          f"matmul peak (aim >= 0.5); visual forward {demo['visual_fwd_s']:.3f} s = {demo['visual_fwd_s'] / demo['step_s']:.0%} of the step "
          f"for {demo['visual_gflop'] / demo['gflop_per_step']:.1%} of its FLOPs; fastest step {demo['min_step_s']:.3f} s -> "
          f"{demo['gflop_per_step'] / demo['min_step_s'] / peak:.2f} of the peak; vs the per-step probe: {demo['frac_probe']:.2f}")
    print(f"[3] B={a.match_batch}: all_pairs {ap['step_s']:.3f} s/step vs hard_k {hk['step_s']:.3f} s/step -> x{ap['step_s'] / hk['step_s']:.2f} "
          f"(FLOPs x{ap['gflop_per_step'] / hk['gflop_per_step']:.2f})")
    print("[4] batch sweep (hard_k): " + ", ".join(f"B={r['batch']}: {r['step_s']:.3f} s, {r['samples_per_s']:.2f} smp/s"
                                                  for r in rows if r["cross_match"] == "hard_k" and r["threads"] == a.threads))
    for r in rows:
        if r["threads"] != a.threads:
            print(f"[threads] demo B={r['batch']}: {r['threads']} thread(s) {r['step_s']:.3f} s/step vs {a.threads} threads {demo['step_s']:.3f} s/step "
                  f"(speed with {r['threads']} / with {a.threads}: x{demo['step_s'] / r['step_s']:.2f})")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    total = time.perf_counter() - t_start
    print(f"\nmax RSS {rss:.2f} GiB; total {total:.0f} s")
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "config": a.config, "peak_start": peak0, "peak_end": peak1,
           "peak_gflops": peak, "rows": rows, "max_rss_gib": rss, "total_s": total}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True); a.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {a.json}")
    return out


if __name__ == "__main__":
    main()
