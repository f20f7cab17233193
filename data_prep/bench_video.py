"""Clips per second of the video layer on the embedded benchmark, against a naive reader.

    python data_prep/bench_video.py [--root data/synthetic] [--limit 240] [--n-clips 4] [--num-frames 1] [--size 64]

`load_clip` (decord, sparse frames resized at decode; and its PyAV fallback) is timed against a naive reader that
decodes every frame with PyAV and then indexes the same sampled frames. One thread, eval-mode sampling, every
video of pretrain.jsonl once per pass (after one warm-up pass). Wall-clock and CPU-time rates are both printed: on a
shared machine the CPU-time figure is the stable one. Generates the small benchmark in a temporary
folder when --root holds none.
"""
import argparse, tempfile, time
from pathlib import Path

import av
import numpy as np
import torch

from snps3.core import read_jsonl
from snps3.data.video import load_clip, normalize, resize_crop, resolve_media_path, sample_segment_indices


def naive_clip(path, n_clips, num_frames, size, rng):
    "Decode every frame with PyAV, then index the sampled ones (what a simple loader does)."
    with av.open(str(path)) as c: frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])  # [F,H,W,3]
    idx = sample_segment_indices(len(frames), n_clips, num_frames, False, rng)                                 # [N,T]
    x = normalize(resize_crop(frames[idx.reshape(-1)], size, False, rng))                                      # [N*T,3,S,S]
    return x.view(n_clips, num_frames, 3, size, size)


def clips_per_s(fn, paths, passes):
    "Best-of-`passes` throughput of `fn` over `paths`, by wall clock and by this process's CPU time (one warm-up pass first)."
    for p in paths: fn(p)
    wall = cpu = 0.0
    for _ in range(passes):
        t0, c0 = time.perf_counter(), time.process_time()
        for p in paths: fn(p)
        wall, cpu = max(wall, len(paths) / (time.perf_counter() - t0)), max(cpu, len(paths) / (time.process_time() - c0))
    return wall, cpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data/synthetic", help="a generated benchmark (made in a temp folder if missing)")
    ap.add_argument("--limit", type=int, default=240, help="videos to time")
    ap.add_argument("--n-clips", type=int, default=4)
    ap.add_argument("--num-frames", type=int, default=1)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(args.root)
    if not (root / "manifest.json").is_file():
        from snps3.data.synthetic import make_synthetic
        root = Path(tempfile.mkdtemp()) / "synthetic"
        make_synthetic(root, seed=0, size="small")
    names = list(dict.fromkeys(r["clip_name"] for r in read_jsonl(root / "pretrain.jsonl") if r.get("type", "video") == "video"))
    paths = [resolve_media_path(root, n) for n in names[: args.limit]]
    rng = np.random.default_rng(0)
    n, t, s = args.n_clips, args.num_frames, args.size
    rates = {
        "load_clip (decord)": clips_per_s(lambda p: load_clip(p, n, t, s, False, rng), paths, args.passes),
        "load_clip (PyAV fallback)": clips_per_s(lambda p: load_clip(p, n, t, s, False, rng, backend="av"), paths, args.passes),
        "naive: decode all, then index": clips_per_s(lambda p: naive_clip(p, n, t, s, rng), paths, args.passes),
    }
    print(f"{len(paths)} videos from {root}, {n} clips x {t} frame(s) at {s} px, eval sampling, 1 thread")
    print(f"  {'reader':32s} {'wall clips/s':>12s} {'cpu clips/s':>12s} {'x naive (cpu)':>14s}")
    base = rates["naive: decode all, then index"][1]
    for k, (wall, cpu) in rates.items(): print(f"  {k:32s} {wall:12.1f} {cpu:12.1f} {cpu / base:14.2f}")


if __name__ == "__main__":
    main()
