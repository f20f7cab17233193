"""Benchmark the pre-training data loader: clips/s with 0, 1 and 2 DataLoader workers, and a naive
decode-every-frame-then-index reader on the same files, measured in the same run (ratios are what to compare).

    python data_prep/bench_loader.py --data data/synthetic [--batches 20] [--batch-size 16]
"""
import argparse, os, sys, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import numpy as np
import torch
from torch.utils.data import DataLoader


def build_dataset(data: Path, n_clips: int, image_size: int):
    "The pre-training dataset of the demo config (MSSM masking, significant words mined on the fly)."
    from snps3.data.datasets import load_annotations, PretrainDataset, TextSide
    from snps3.data.text import load_tokenizer
    from snps3.miner import mine_to_dir, load_significant, load_lemma_variants
    tok = load_tokenizer("minilm")
    words, lemmas = mine_to_dir([data / "pretrain.jsonl"], data / "words_bench", tokenizer_name="minilm")
    text = TextSide(tok, load_significant(words, len(tok), 800), load_lemma_variants(lemmas))
    recs = [r for r in load_annotations(data / "pretrain.jsonl", "pretrain") if r.get("type", "video") == "video"]
    return PretrainDataset(recs, data, text, n_clips, 1, image_size, training=True, seed=0)


def time_loader(ds, workers: int, batches: int, batch_size: int) -> float:
    "Clips per second over `batches` batches (after one warm-up batch)."
    from snps3.data.datasets import collate_pretrain
    dl = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate_pretrain,
                    generator=torch.Generator().manual_seed(0))
    it = iter(dl); next(it)
    t0, n = time.perf_counter(), 0
    for _ in range(batches):
        b = next(it); n += b["video"].shape[0]
    return n / (time.perf_counter() - t0)


def time_naive(ds, clips: int, n_clips: int, image_size: int) -> float:
    "Clips per second of a reader that decodes every frame, then indexes the sampled ones."
    import av
    from snps3.data.video import resolve_media_path, sample_segment_indices, resize_crop
    rng, t0 = np.random.default_rng(0), time.perf_counter()
    for i in range(clips):
        path = resolve_media_path(ds.root, ds.items[i % len(ds)]["clip_name"])
        with av.open(str(path)) as c: frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        idx = sample_segment_indices(len(frames), n_clips, 1, True, rng).reshape(-1)
        resize_crop(frames[idx], image_size, True, rng)
    return clips / (time.perf_counter() - t0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/synthetic"))
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-clips", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=64)
    a = ap.parse_args()
    if not (a.data / "pretrain.jsonl").exists(): sys.exit(f"{a.data}/pretrain.jsonl not found: run data_prep/make_synthetic.py --out {a.data}")
    torch.set_num_threads(1)
    ds = build_dataset(a.data, a.n_clips, a.image_size)
    print(f"{len(ds)} video items, {a.n_clips} clips x 1 frame at {a.image_size}px, batch {a.batch_size}, {a.batches} batches, {os.cpu_count()} cores")
    res = {f"loader, {w} workers": time_loader(ds, w, a.batches, a.batch_size) for w in (0, 1, 2)}
    res["naive decode-all reader"] = time_naive(ds, min(len(ds), a.batches * a.batch_size // 2), a.n_clips, a.image_size)
    base = res["loader, 0 workers"]
    for k, v in res.items(): print(f"{k:28s} {v:8.1f} samples/s   x{v / base:.2f} vs 0 workers")
