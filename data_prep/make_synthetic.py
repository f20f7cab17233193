"""Generate the embedded benchmark (real mp4 videos, images, jsonl annotations, manifest.json).

    python data_prep/make_synthetic.py --out data/synthetic [--seed 0] [--size small|medium|tiny]

The same seed gives byte-identical files (for the same PyAV / libx264 / Pillow / scikit-image build).
A folder holding a previous generation is regenerated in place; any other non-empty folder is refused.
"""
import argparse, time

from snps3.data.synthetic import PRESETS, make_synthetic


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="everything is a function of the seed (default 0)")
    ap.add_argument("--size", default="small", choices=list(PRESETS), help="small: CPU demo (default); medium: 5x small; tiny: tests")
    args = ap.parse_args(argv)
    t0 = time.time()
    manifest = make_synthetic(args.out, seed=args.seed, size=args.size)
    counts = ", ".join(f"{k}={v}" for k, v in sorted(manifest["counts"].items()))
    print(f"wrote {len(manifest['files'])} files to {args.out} in {time.time() - t0:.1f} s ({counts})")


if __name__ == "__main__":
    main()
