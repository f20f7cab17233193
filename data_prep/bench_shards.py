"""Benchmark the pre-training loader on media files vs WebDataset shards: time to the first batch and clips/s with
0, 1 and 2 DataLoader workers, measured in the same run on the same clips (ratios are what to compare).

    python data_prep/make_synthetic.py --out /tmp/medium --size medium
    python data_prep/bench_shards.py --data /tmp/medium [--shards /tmp/medium_shards] [--batches 20] [--batch-size 16]

Shards are written with data_prep/make_shards.py (--samples-per-shard 256) when --shards does not hold any yet.
"""
import argparse, os, sys, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch
from torch.utils.data import DataLoader


def text_side(max_len: int = 30):
    "The MiniLM tokenizer with every word significant (mining is not what is measured here)."
    from snps3.data.datasets import TextSide
    from snps3.data.text import load_tokenizer
    tok = load_tokenizer("minilm")
    return TextSide(tok, torch.ones(len(tok), dtype=torch.bool), {}, max_len)


def files_loader(data: Path, text, workers: int, a) -> DataLoader:
    "The files path of training: PretrainDataset + GlobalBatchSampler."
    from snps3.data.datasets import GlobalBatchSampler, PretrainDataset, collate_pretrain, load_annotations
    ds = PretrainDataset(load_annotations(data / "pretrain.jsonl"), data, text, a.n_clips, 1, a.image_size, True, 0)
    return DataLoader(ds, batch_sampler=GlobalBatchSampler(len(ds), a.batch_size, seed=0), collate_fn=collate_pretrain, num_workers=workers)


def shards_loader(shards: Path, text, workers: int, a) -> DataLoader:
    "The webdataset path of training: ShardStream (shuffle buffer 1000)."
    from snps3.data.datasets import collate_pretrain
    from snps3.data.shards import ShardStream
    ds = ShardStream(shards, text, a.batch_size, a.n_clips, 1, a.image_size, 0, shuffle_buffer=a.shuffle_buffer)
    return DataLoader(ds, batch_size=a.batch_size, collate_fn=collate_pretrain, num_workers=workers)


def measure(dl: DataLoader, batches: int) -> tuple[float, float]:
    "(seconds to the first batch, clips/s over the next `batches` batches)."
    t0 = time.perf_counter(); it = iter(dl); next(it); first = time.perf_counter() - t0
    t1, n = time.perf_counter(), 0
    for _ in range(batches): n += next(it)["video"].shape[0]
    return first, n / (time.perf_counter() - t1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/synthetic"), help="media root with pretrain.jsonl")
    ap.add_argument("--shards", type=Path, default=None, help="shard folder (default: <data>_shards)")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-clips", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--shuffle-buffer", type=int, default=1000)
    a = ap.parse_args()
    if not (a.data / "pretrain.jsonl").exists(): sys.exit(f"{a.data}/pretrain.jsonl not found: run data_prep/make_synthetic.py --out {a.data}")
    shards = a.shards or a.data.with_name(a.data.name + "_shards")
    if not (shards / "index.json").exists():
        from snps3.data.shards import write_shards
        write_shards(a.data / "pretrain.jsonl", a.data, shards, samples_per_shard=256)
    torch.set_num_threads(1)
    text = text_side()
    from snps3.data.shards import read_shard_index
    idx = read_shard_index(shards)
    print(f"{idx['samples']} clips ({len(idx['shards'])} shards), {a.n_clips} clips x 1 frame at {a.image_size}px, batch {a.batch_size}, "
          f"{a.batches} batches after the first, {os.cpu_count()} cores\n")
    print("| source | workers | first batch (s) | clips/s |\n|---|---|---|---|")
    for w in (0, 1, 2):
        for name, make, root in (("files", files_loader, a.data), ("shards", shards_loader, shards)):
            first, rate = measure(make(root, text, w, a), a.batches)
            print(f"| {name} | {w} | {first:.2f} | {rate:.1f} |", flush=True)
