"""Benchmark retrieval evaluation on CPU: time and R@1 against the gallery size, for cross-score reranking of the dual
top-k (`eval.rerank_k`) and for the exact mode (every caption x clip pair cross-scored), to show how each grows.

    python data_prep/bench_eval.py [--sizes 100 300 1000] [--rerank-k 16] [--exact-max 300] [--data DIR]
                                   [--checkpoint RUN_DIR] [--json OUT] [--quick]

Code path: the one `snps3.downstream.eval_retrieval` runs, called step by step so each part is timed on its own:
`encode_gallery` (clips: decode + visual encoder) and `encode_queries` (captions: text pass) -> "encode s";
`retrieval_scores(model, queries, gallery, rerank_k, device, batch_size)` -> "dual s" (dual matrix, top-k / pair
selection) and "cross s" (cross passes over the selected pairs, score lookup, reranked matrices); `retrieval_report`
-> R@1 (text->video). Encoding is done once per gallery size and shared by the two modes (same numbers on both rows).

Data: the embedded benchmark at `--size medium` (300 held-out test clips + 1200 pre-training videos = 1500 clips;
generated into `--data` in ~30 s when its annotations are missing). The gallery of size N is the first N clips of:
every `retrieval_test.jsonl` clip with all its captions (~1.3 per clip), then the pre-training *video* items of
`pretrain.jsonl` (images skipped, test clips not repeated), each with its first `--captions-per-clip` distinct captions
(default 1, so that N clips come with ~N captions as in MSR-VTT 1k-A). Galleries are nested prefixes (as `eval.max_clips`).
Note: pre-training captions are templated, so one caption may also describe other clips of the gallery; only its own clip
counts as ground truth, which caps R@1 below 100 even for a perfect model.

Model: `--checkpoint` (a run directory or checkpoints/step_N, loaded with `load_for_eval`), else a freshly initialised
demo model (`SNPModel(load_config('demo_cpu'))`: pretrained MiniLM + efficientnet-lite0, random heads, so R@1 is near
chance (100/N %); the point is then the timing growth only).

Exact mode is quadratic (N_t x N_v cross passes). It is measured for sizes <= `--exact-max` and only while the time
predicted from the reranking run's per-pair cost stays under `--exact-budget` seconds; other sizes get an EXTRAPOLATED
row (marked `~`, mode `exact*`): pairs = N_t x N_v, cross s = pairs x the per-pair cost of the largest measured exact run
(of the reranking runs when none was measured), dual s scaled with the pair count from the largest measured exact run,
encode s = the measured one at that size, R@1 not available.
"""
import argparse, json, math, os, sys, time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch


# ---------------------------------------------------------------- setup
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000], help="gallery sizes in clips (default 100 300 1000)")
    ap.add_argument("--rerank-k", type=int, default=16, help="cross-score the dual top-k per caption and per clip (default 16)")
    ap.add_argument("--exact-max", type=int, default=300, help="measure the exact mode up to this many clips (default 300)")
    ap.add_argument("--exact-budget", type=float, default=120.0,
                    help="skip (extrapolate) a measured exact run whose predicted cross time exceeds this many seconds (default 120)")
    ap.add_argument("--data", type=Path, default=Path("data/synthetic_medium"),
                    help="benchmark root; generated with make_synthetic --size medium when missing (default data/synthetic_medium)")
    ap.add_argument("--checkpoint", default="", help="run directory or checkpoint directory (default: fresh demo model)")
    ap.add_argument("--captions-per-clip", type=int, default=1, help="captions kept per pre-training clip (0: all; default 1)")
    ap.add_argument("--batch-size", type=int, default=0, help="clip / cross-pair batch size (default: the config's eval.batch_size)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's own choice)")
    ap.add_argument("--quick", action="store_true",
                    help="sizes 50 150 500, exact measured at 50 only (--exact-max 50, --exact-budget 60): about half the default's time")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args(argv)
    if a.quick: a.sizes, a.exact_max, a.exact_budget = [50, 150, 500], min(a.exact_max, 50), min(a.exact_budget, 60.0)
    a.sizes = sorted(set(a.sizes))
    if a.sizes[0] < 2: ap.error("--sizes must be >= 2 clips")
    if a.rerank_k < 1: ap.error("--rerank-k must be >= 1 (the exact mode is always benchmarked alongside)")
    return a


def ensure_data(root: Path) -> None:
    "Generate the medium embedded benchmark into `root` when its annotations are missing."
    if (root / "retrieval_test.jsonl").exists() and (root / "pretrain.jsonl").exists(): return
    from snps3.data.synthetic import make_synthetic
    print(f"{root}: annotations not found, generating the medium benchmark there ...", flush=True)
    t0 = time.perf_counter(); make_synthetic(root, seed=0, size="medium")
    print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)


def gallery_records(root: Path, captions_per_clip: int) -> list[dict]:
    "Retrieval records in gallery order: all test clips (all captions), then pre-training video clips (first distinct captions)."
    from snps3.data.datasets import load_annotations
    recs = [{"clip_name": r["clip_name"], "caption": r["caption"]} for r in load_annotations(root / "retrieval_test.jsonl", "retrieval")]
    test = {r["clip_name"] for r in recs}
    kept: dict[str, list[str]] = {}
    for r in load_annotations(root / "pretrain.jsonl", "pretrain"):
        if r.get("type", "video") != "video" or r["clip_name"] in test: continue
        caps = kept.setdefault(r["clip_name"], [])
        if r["caption"] not in caps and (captions_per_clip == 0 or len(caps) < captions_per_clip): caps.append(r["caption"])
    return recs + [{"clip_name": c, "caption": t} for c, caps in kept.items() for t in caps]


def first_clips(records: list[dict], n: int) -> list[dict]:
    "Records of the first `n` distinct clips (what `eval.max_clips` does)."
    keep = set(list(dict.fromkeys(r["clip_name"] for r in records))[:n])
    return [r for r in records if r["clip_name"] in keep]


def build_model(checkpoint: str, root: Path, device):
    "(model in eval mode, config pointing at `root`, description)."
    from dataclasses import replace
    from snps3.config import load_config
    from snps3.core import seed_everything
    from snps3.downstream import load_for_eval
    from snps3.models.snp import SNPModel
    if checkpoint:
        model, cfg, ck = load_for_eval(checkpoint, device)
        desc = f"checkpoint {ck} (trained task={cfg.task})"
    else:
        seed_everything(0)
        cfg = load_config("demo_cpu")
        model = SNPModel(cfg).to(device).eval()
        desc = "fresh demo model (demo_cpu: pretrained MiniLM + efficientnet-lite0, RANDOM heads -> R@1 near chance; timings are the point)"
    cfg = replace(cfg, data=replace(cfg.data, root=str(root)))
    return model, cfg, desc


# ---------------------------------------------------------------- measurement
def warm_up(model, cfg, tok, names: list[str], caps: list[str], device, batch_size: int) -> dict:
    """One small pass through every timed function (thread pools, allocator, lazy imports), then a thread probe:
    ms per cross pair of one `cross_pair_scores` batch at 1 thread and at the current count (best of 2)."""
    from snps3.downstream import encode_gallery, encode_queries, retrieval_scores, cross_pair_scores
    g = encode_gallery(model, names[:4], cfg, device)
    q = encode_queries(model, tok, caps[:8], cfg.data.max_text_len, device)
    retrieval_scores(model, q, g, 0, device, batch_size)
    pairs = torch.cartesian_prod(torch.arange(8), torch.arange(4))[:batch_size]                # [<=32,2]
    current, probe = torch.get_num_threads(), {}
    for th in sorted({1, current}):
        torch.set_num_threads(th)
        best = min(_timed(lambda: cross_pair_scores(model, q, g, pairs, device, batch_size)) for _ in range(2))
        probe[th] = 1e3 * best / len(pairs)
    torch.set_num_threads(current)
    return probe


def _timed(fn) -> float:
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def encode(model, cfg, tok, clips: list[str], caps: list[str], device) -> tuple:
    "(gallery, queries, clips_s, captions_s)."
    from snps3.downstream import encode_gallery, encode_queries
    t0 = time.perf_counter()
    gallery = encode_gallery(model, clips, cfg, device)
    t1 = time.perf_counter()
    queries = encode_queries(model, tok, caps, cfg.data.max_text_len, device)
    return gallery, queries, t1 - t0, time.perf_counter() - t1


def score(model, queries, gallery, gt, k: int, device, batch_size: int) -> dict:
    "One `retrieval_scores` + `retrieval_report` run: pairs, timings, R@1."
    from snps3.downstream import retrieval_scores, retrieval_report
    sc = retrieval_scores(model, queries, gallery, k, device, batch_size)
    rep = retrieval_report(sc, gt)
    return {"exact": sc["exact"], "pairs_scored": sc["pairs_scored"], "dual_s": sc["dual_s"], "cross_s": sc["cross_s"],
            "dual_R1": rep["dual/t2v/R@1"], "cross_R1": rep["cross/t2v/R@1"], "cross_v2t_R1": rep["cross/v2t/R@1"]}


def row(n_clips, n_caps, mode, enc, sc, extrapolated=False) -> dict:
    return {"n_clips": n_clips, "n_captions": n_caps, "mode": mode, "pairs_scored": sc["pairs_scored"],
            "encode_s": enc["clips_s"] + enc["captions_s"], "clips_s": enc["clips_s"], "captions_s": enc["captions_s"],
            "dual_s": sc["dual_s"], "cross_s": sc["cross_s"],
            "total_s": enc["clips_s"] + enc["captions_s"] + sc["dual_s"] + sc["cross_s"],
            "dual_R1": sc.get("dual_R1"), "cross_R1": sc.get("cross_R1"), "extrapolated": extrapolated}


def extrapolate(rows: list[dict], per_size: dict, k: int) -> tuple[list[dict], str]:
    "Exact rows for the sizes without a measured exact run, from measured per-pair costs."
    exact = [r for r in rows if r["mode"] == "exact" and not r["extrapolated"]]
    rer = [r for r in rows if r["mode"] == f"rerank@{k}"]
    if exact:
        ref = max(exact, key=lambda r: r["pairs_scored"])
        per_pair, dual_per_pair = ref["cross_s"] / ref["pairs_scored"], ref["dual_s"] / ref["pairs_scored"]
        basis = f"exact run at {ref['n_clips']} clips: {1e3 * per_pair:.3f} ms/pair cross, {1e6 * dual_per_pair:.3f} us/pair dual"
    else:
        ref = max(rer, key=lambda r: r["pairs_scored"])
        per_pair, dual_per_pair = ref["cross_s"] / ref["pairs_scored"], None
        basis = (f"NO exact run measured; rerank@{k} run at {ref['n_clips']} clips: {1e3 * per_pair:.3f} ms/pair cross "
                 "(dual s taken from that size's rerank row)")
    out = []
    for n, info in per_size.items():
        if info["exact_measured"]: continue
        pairs = info["n_captions"] * n
        dual = pairs * dual_per_pair if dual_per_pair is not None else info["rerank"]["dual_s"]
        out.append(row(n, info["n_captions"], "exact*", info["enc"], {"pairs_scored": pairs, "dual_s": dual, "cross_s": pairs * per_pair}, True))
    return out, basis


# ---------------------------------------------------------------- report
def fmt_s(x: float, approx: bool) -> str:
    return ("~" if approx else "") + (f"{x:.1f}" if x < 1000 else f"{x:.0f}")


def print_table(rows: list[dict]) -> None:
    head = ("n_clips", "n_captions", "mode", "pairs scored", "encode s", "dual s", "cross s", "total s", "dual R@1", "cross R@1")
    lines = []
    for r in sorted(rows, key=lambda r: (r["n_clips"], r["mode"].startswith("exact"))):
        x = r["extrapolated"]
        pct = lambda v: "n/a" if v is None else f"{v:.1f}"
        lines.append((str(r["n_clips"]), str(r["n_captions"]), r["mode"], ("~" if x else "") + f"{r['pairs_scored']:,}",
                      fmt_s(r["encode_s"], False), fmt_s(r["dual_s"], x), fmt_s(r["cross_s"], x), fmt_s(r["total_s"], x),
                      pct(r["dual_R1"]), pct(r["cross_R1"])))
    w = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w[i]) for i, h in enumerate(head)))
    print("  ".join("-" * w[i] for i in range(len(head))))
    for l in lines: print("  ".join(c.rjust(w[i]) for i, c in enumerate(l)))


def print_growth(rows: list[dict], k: int) -> list[dict]:
    "Growth exponents between consecutive sizes: time ∝ N^a (a = 1 linear, 2 quadratic)."
    out = []
    for mode in (f"rerank@{k}", "exact"):
        rs = sorted([r for r in rows if r["mode"].rstrip("*") == mode], key=lambda r: r["n_clips"])
        for a, b in zip(rs, rs[1:]):
            e = lambda key: math.log(max(b[key], 1e-9) / max(a[key], 1e-9)) / math.log(b["n_clips"] / a["n_clips"])
            g = {"mode": mode, "from": a["n_clips"], "to": b["n_clips"], "pairs_exp": e("pairs_scored"), "cross_exp": e("cross_s"),
                 "total_exp": e("total_s"), "extrapolated": a["extrapolated"] or b["extrapolated"]}
            out.append(g)
            print(f"  {mode:>10} {a['n_clips']:>5} -> {b['n_clips']:<5} x{b['n_clips'] / a['n_clips']:.1f} clips: pairs x{b['pairs_scored'] / a['pairs_scored']:.1f}, "
                  f"cross s x{b['cross_s'] / a['cross_s']:.1f} (N^{g['cross_exp']:.2f}), total s x{b['total_s'] / a['total_s']:.1f} "
                  f"(N^{g['total_exp']:.2f}){'  [uses extrapolated]' if g['extrapolated'] else ''}")
    return out


# ---------------------------------------------------------------- main
def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    device = torch.device("cpu")
    t_start = time.perf_counter()
    ensure_data(a.data)
    from snps3.data.datasets import retrieval_pairs
    from snps3.data.text import load_tokenizer
    records = gallery_records(a.data, a.captions_per_clip)
    n_avail = len(dict.fromkeys(r["clip_name"] for r in records))
    if a.sizes[-1] > n_avail:
        sys.exit(f"{a.data} offers {n_avail} video clips (test + pre-training videos) but --sizes asks for {a.sizes[-1]}; "
                 "use a --size medium benchmark (1500 clips) or smaller --sizes")
    model, cfg, desc = build_model(a.checkpoint, a.data, device)
    bs = a.batch_size or cfg.eval.batch_size
    tok = load_tokenizer(cfg.model.text_model)
    print(f"model: {desc}")
    print(f"data: {a.data} (gallery = retrieval_test clips, then pretrain.jsonl video items with {a.captions_per_clip or 'all'} caption(s) each; "
          f"{n_avail} clips available)")
    print(f"torch {torch.__version__}: {torch.get_num_threads()} intra-op threads, {torch.get_num_interop_threads()} inter-op, "
          f"{os.cpu_count()} cores visible; device cpu; clip/pair batch {bs}; clips: {cfg.data.n_clips} segments x "
          f"{cfg.data.num_frames} frame(s) at {cfg.data.image_size} px; max_text_len {cfg.data.max_text_len}")
    print(f"sizes {a.sizes}, rerank k={a.rerank_k}, exact measured up to {a.exact_max} clips (budget {a.exact_budget:.0f} s)", flush=True)
    probe = warm_up(model, cfg, tok, list(dict.fromkeys(r["clip_name"] for r in records)), [r["caption"] for r in records], device, bs)
    print("thread probe (one cross batch, ms/pair): " + ", ".join(f"{th} thread(s) {ms:.1f}" for th, ms in probe.items()), flush=True)
    if not a.threads and len(probe) > 1 and probe[1] * 1.3 < probe[torch.get_num_threads()]:
        print(f"  NOTE: 1 thread beats {torch.get_num_threads()} here (busy shared cores / OpenMP oversubscription); "
              "consider --threads 1", flush=True)

    rows, per_size = [], {}
    for n in a.sizes:
        clips, caps, gt = retrieval_pairs(first_clips(records, n))
        gallery, queries, clips_s, caps_s = encode(model, cfg, tok, clips, caps, device)
        enc = {"clips_s": clips_s, "captions_s": caps_s}
        print(f"[{n} clips, {len(caps)} captions] encode: clips {clips_s:.1f} s ({n / clips_s:.1f} clips/s), captions {caps_s:.1f} s"
              f"{f'; {len(gallery.skipped)} clips unreadable' if gallery.skipped else ''}", flush=True)
        sc = score(model, queries, gallery, gt, a.rerank_k, device, bs)
        rows.append(row(n, len(caps), "exact" if sc["exact"] else f"rerank@{a.rerank_k}", enc, sc))
        print(f"  rerank@{a.rerank_k}: {sc['pairs_scored']:,} pairs, dual {sc['dual_s']:.2f} s, cross {sc['cross_s']:.1f} s "
              f"({1e3 * sc['cross_s'] / max(sc['pairs_scored'], 1):.2f} ms/pair), R@1 dual {sc['dual_R1']:.1f} cross {sc['cross_R1']:.1f}", flush=True)
        info = {"n_captions": len(caps), "enc": enc, "rerank": sc, "exact_measured": sc["exact"]}
        predicted = len(caps) * n * sc["cross_s"] / max(sc["pairs_scored"], 1)
        if not sc["exact"] and n <= a.exact_max and predicted <= a.exact_budget:
            ex = score(model, queries, gallery, gt, 0, device, bs)
            rows.append(row(n, len(caps), "exact", enc, ex))
            info["exact_measured"] = True
            print(f"  exact: {ex['pairs_scored']:,} pairs, dual {ex['dual_s']:.2f} s, cross {ex['cross_s']:.1f} s "
                  f"({1e3 * ex['cross_s'] / ex['pairs_scored']:.2f} ms/pair; predicted {predicted:.0f} s), R@1 dual {ex['dual_R1']:.1f} cross {ex['cross_R1']:.1f}", flush=True)
        elif not sc["exact"]:
            why = f"{n} > --exact-max {a.exact_max}" if n > a.exact_max else f"predicted {predicted:.0f} s > --exact-budget {a.exact_budget:.0f} s"
            print(f"  exact: not measured ({why}); extrapolated below", flush=True)
        per_size[n] = info
        del gallery, queries

    extra, basis = extrapolate(rows, per_size, a.rerank_k)
    rows += extra
    print(f"\nRetrieval evaluation vs gallery size ({desc.split(' (')[0]}; {torch.get_num_threads()} threads; R@1 = text->video, %; "
          f"chance = 100/n_clips)")
    print_table(rows)
    print("encode s = clips (decode + visual encoder) + captions (text pass), measured once per size and shared by both modes.")
    if extra: print(f"~ / exact* = EXTRAPOLATED, not measured: pairs = n_captions x n_clips; per-pair cost from the {basis}.")
    print("growth (time ∝ N^a):")
    growth = print_growth(rows, a.rerank_k)
    wall = time.perf_counter() - t_start
    print(f"benchmark wall time {wall:.0f} s")
    res = {"model": desc, "checkpoint": a.checkpoint or None, "data": str(a.data), "captions_per_clip": a.captions_per_clip,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "batch_size": bs, "rerank_k": a.rerank_k,
           "exact_max": a.exact_max, "exact_budget_s": a.exact_budget, "extrapolation_basis": basis if extra else None,
           "thread_probe_ms_per_pair": probe, "rows": rows, "growth": growth, "wall_s": wall}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))
        print(f"wrote {a.json}")
    return res


if __name__ == "__main__":
    main()
