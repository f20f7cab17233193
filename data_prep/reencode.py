#!/usr/bin/env python
"""Re-encode a folder of videos to H.264 mp4 with short GOPs (cheap sparse frame sampling), optionally a new fps / size.

  python data_prep/reencode.py --src MSRVTT/videos/all --dst data/msrvtt/videos --fps 8 --short-side 256 --gop 8 --workers 8

Every video file under --src (any extension FFmpeg reads: .mp4 .avi .mov .webm .3gp ...) is written to the same
relative path under --dst with the extension .mp4 (so bare clip names such as `video7010` resolve). Existing outputs are
kept unless --overwrite (re-running resumes). Undecodable inputs are skipped and counted by reason; the first file of
each reason is named. Output: libx264, yuv420p, a keyframe every --gop frames, even dimensions, no audio.
"""
import argparse, sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from snps3.core import atomic_write_json
from snps3.data.convert import reencode_many
from snps3.data.video import VIDEO_EXTS


def find_jobs(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    "(input, output) pairs: every video under `src` → the same relative path under `dst` with suffix .mp4."
    jobs = [(p, (dst / p.relative_to(src)).with_suffix(".mp4")) for p in sorted(src.rglob("*"))
            if p.is_file() and p.suffix.lower() in VIDEO_EXTS]
    outs = {}
    for s, d in jobs:
        if d in outs: raise ValueError(f"{s} and {outs[d]} would both be written to {d}; rename one of them")
        outs[d] = s
    return jobs


def merge(reports: list[dict]) -> dict:
    "Sum the reports of several `reencode_many` calls."
    out = {"format": "reencode", "done": 0, "existing": 0, "skipped": {}, "examples": {}}
    for r in reports:
        out["done"] += r["done"]; out["existing"] += r["existing"]
        for k, n in r["skipped"].items(): out["skipped"][k] = out["skipped"].get(k, 0) + n
        for k, v in r["examples"].items(): out["examples"].setdefault(k, v)
    return out


def main(argv=None) -> int:
    "Re-encode, print the report; return the exit status."
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--src", required=True, type=Path); p.add_argument("--dst", required=True, type=Path)
    p.add_argument("--fps", type=float, help="output frame rate (default: the source's)")
    p.add_argument("--short-side", type=int, help="scale the short side down to this many pixels (never up)")
    p.add_argument("--gop", type=int, default=8, help="a keyframe every GOP frames (8-16 keeps sparse sampling cheap)")
    p.add_argument("--crf", type=int, default=23); p.add_argument("--preset", default="veryfast")
    p.add_argument("--workers", type=int, default=1); p.add_argument("--overwrite", action="store_true")
    p.add_argument("--report", help="also write the report as JSON here")
    a = p.parse_args(argv)
    if not a.src.is_dir(): print(f"error: --src is not a folder: {a.src}", file=sys.stderr); return 1
    try: jobs = find_jobs(a.src, a.dst)
    except ValueError as e: print(f"error: {e}", file=sys.stderr); return 1
    kw = dict(overwrite=a.overwrite, fps=a.fps, short_side=a.short_side, gop=a.gop, crf=a.crf, preset=a.preset)
    chunks = [jobs[i::a.workers] for i in range(max(1, a.workers))]
    if a.workers > 1:
        with ProcessPoolExecutor(a.workers) as ex: report = merge(list(ex.map(_run, [(c, kw) for c in chunks])))
    else: report = reencode_many(jobs, **kw)
    report["found"] = len(jobs)
    print(f"reencode: {len(jobs)} videos found, {report['done']} written, {report['existing']} already there")
    for reason, n in report["skipped"].items(): print(f"  skipped {n}: {reason} (first: {report['examples'][reason]})")
    if a.report: atomic_write_json(a.report, report)
    return 0


def _run(job) -> dict:
    "Worker: one chunk of jobs."
    chunk, kw = job
    return reencode_many(chunk, **kw)


if __name__ == "__main__":
    sys.exit(main())
