"""Turn an annotation jsonl + media root into WebDataset tar shards (media bytes + captions json per clip) with an
index.json of counts, sizes and sha256 checksums; or check existing shards against their index.

    python data_prep/make_shards.py --ann data/synthetic/pretrain.jsonl --root data/synthetic --out data/shards
    python data_prep/make_shards.py --verify data/shards

Then train from them with `data.format=webdataset data.root=data/shards` (a folder or any fsspec URL).
"""
import argparse, sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ann", type=Path, help="pretrain annotation jsonl ({clip_name, caption, type?, start?, end?} per line)")
    ap.add_argument("--root", type=Path, help="media root the clip names are relative to")
    ap.add_argument("--out", type=Path, help="output folder for shard-NNNNNN.tar, index.json and a copy of the annotation")
    ap.add_argument("--samples-per-shard", type=int, default=1000, help="clips per shard (default 1000)")
    ap.add_argument("--max-shard-mb", type=float, default=1024, help="close a shard earlier once its media reach this size (default 1024)")
    ap.add_argument("--shuffle-seed", type=int, default=None, help="shuffle the clips before sharding (for sorted annotation files)")
    ap.add_argument("--strict", action="store_true", help="fail on a missing / empty media file instead of skipping and listing it")
    ap.add_argument("--overwrite", action="store_true", help="replace shards already in --out")
    ap.add_argument("--verify", metavar="DIR", help="re-hash and count the shards of DIR against its index.json, then exit")
    a = ap.parse_args(argv)
    from snps3.data.shards import verify_shards, write_shards
    if a.verify:
        problems = verify_shards(a.verify)
        for p in problems: print(p, file=sys.stderr)
        print(f"{a.verify}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if not (a.ann and a.root and a.out): ap.error("--ann, --root and --out are required (or --verify DIR)")
    try:
        index = write_shards(a.ann, a.root, a.out, a.samples_per_shard, int(a.max_shard_mb * 2**20), a.strict, a.shuffle_seed, a.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e: sys.exit(f"make_shards: {e}")
    mb = sum(s["bytes"] for s in index["shards"]) / 2**20
    print(f"{a.out}: {index['samples']} clips in {len(index['shards'])} shards ({mb:.1f} MiB), {len(index['skipped'])} skipped")
    for s in index["skipped"][:10]: print(f"  skipped {s['clip_name']}: {s['reason']}", file=sys.stderr)
    return 0


if __name__ == "__main__": sys.exit(main())
