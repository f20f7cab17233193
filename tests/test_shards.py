"""WebDataset shards end to end: make_shards.py round trip and --verify, a 2-worker loader that resumes exactly, and a
pre-training run on shards that, killed at a checkpoint and resumed, ends with the weights of an uninterrupted run."""
import json, subprocess, sys, tarfile
from pathlib import Path

import pytest
import torch

from helpers import ENV, latest_weights, metrics, pretrain_args, run_cli

ROOT = Path(__file__).resolve().parents[1]


def make_shards(*args):
    return subprocess.run([sys.executable, str(ROOT / "data_prep/make_shards.py"), *map(str, args)], capture_output=True, text=True, env=ENV)


@pytest.fixture(scope="module")
def shards(tiny_bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "tiny"
    r = make_shards("--ann", tiny_bench / "pretrain.jsonl", "--root", tiny_bench, "--out", out, "--samples-per-shard", 3)
    assert r.returncode == 0, r.stderr
    return out


def test_round_trip_bytes_captions_index(tiny_bench, shards):
    "Every clip of the annotation is in the shards with its exact file bytes and all its captions; the index matches the tars."
    from snps3.data.datasets import group_by_clip, load_annotations
    from snps3.data.video import resolve_media_path
    from snps3.core import sha256_file
    items = group_by_clip(load_annotations(tiny_bench / "pretrain.jsonl"))
    index = json.loads((shards / "index.json").read_text())
    assert index["samples"] == len(items) and index["skipped"] == []
    seen = {}
    for s in index["shards"]:
        assert sha256_file(shards / s["name"]) == s["sha256"]
        with tarfile.open(shards / s["name"]) as t:
            names = t.getnames()
            assert len(names) == 2 * s["samples"]
            for name in names:
                if name.endswith(".json"):
                    meta = json.loads(t.extractfile(name).read()); seen[meta["clip_name"]] = (meta, t.extractfile(name.replace(".json", "." + next(
                        n.split(".", 1)[1] for n in names if n.startswith(name.split(".")[0]) and not n.endswith(".json")))).read())
    assert sorted(seen) == sorted(it["clip_name"] for it in items)
    for it in items:
        meta, data = seen[it["clip_name"]]
        assert meta["captions"] == it["captions"] and meta["type"] == it["type"]
        assert data == resolve_media_path(tiny_bench, it["clip_name"]).read_bytes()
    ok = make_shards("--verify", shards)
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_verify_reports_a_damaged_shard(shards, tmp_path):
    import shutil
    bad = tmp_path / "bad"; shutil.copytree(shards, bad)
    p = bad / "shard-000001.tar"; b = bytearray(p.read_bytes()); b[700] ^= 0xFF; p.write_bytes(bytes(b))
    r = make_shards("--verify", bad)
    assert r.returncode == 1 and "shard-000001.tar: sha256 differs from index.json" in r.stderr


def _batches(shards, n, start=0, workers=2, rank=0, world=1):
    "n batches (indices and pixels) of a real DataLoader over the shards, resumed at batch `start`."
    from snps3.data.datasets import TextSide
    from snps3.data.shards import build_shard_loader
    from snps3.testing import minilm_tokenizer, tiny_config
    cfg = tiny_config(**{"data.root": str(shards), "data.format": "webdataset", "data.num_workers": workers, "data.shuffle_buffer": 4,
                         "data.val_root": "unused", "data.batch_size": 4})
    tok = minilm_tokenizer()
    ds, dl = build_shard_loader(cfg, TextSide(tok, torch.ones(len(tok), dtype=torch.bool), {}, 12), (0, 0, 0), (1, 1, 1), rank, world)
    ds.set_epoch(0, start)
    it, out = iter(dl), []
    for _ in range(n):
        b = next(it); out.append((b["index"].tolist(), b["video"]))
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resumes_exactly(shards, workers):
    "A loader resumed at batch 3 yields batches 3, 4, 5 of an uninterrupted one, also with 2 workers (streams rotate)."
    full = _batches(shards, 6, workers=workers)
    assert len({tuple(i) for i, _ in full}) > 1
    for (ia, va), (ib, vb) in zip(full[3:], _batches(shards, 3, start=3, workers=workers)):
        assert ia == ib and torch.equal(va, vb)


def test_ranks_read_different_clips(shards):
    "Two ranks with one worker each stream different shards (4 shards, 2 streams): their first batches share no clip."
    a, b = _batches(shards, 1, workers=0, rank=0, world=2), _batches(shards, 1, workers=0, rank=1, world=2)
    assert not set(a[0][0]) & set(b[0][0])


def test_pretrain_on_shards_resumes_to_identical_weights(shards, tmp_path):
    "Shards with 2 loader workers: 6 steps straight == 3 steps, stop, resume to 6 (weights bit-equal, no duplicated log rows)."
    common = (f"data.root={shards}", "data.format=webdataset", "data.num_workers=2", "data.shuffle_buffer=5", "train.save_every=3",
              "train.schedule=constant")  # the LR of a step must not depend on max_steps (3 vs 6)
    ref = run_cli(pretrain_args(shards, tmp_path / "ref", *common, "train.max_steps=6"))
    assert ref.returncode == 0, ref.stderr[-3000:]
    half = run_cli(pretrain_args(shards, tmp_path / "run", *common, "train.max_steps=3"))
    assert half.returncode == 0, half.stderr[-3000:]
    res = run_cli(pretrain_args(shards, tmp_path / "run", *common, "train.max_steps=6", "train.resume=auto"))
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = latest_weights(tmp_path / "ref"), latest_weights(tmp_path / "run")
    for k in a: assert torch.equal(a[k], b[k]), k
    assert [r["step"] for r in metrics(tmp_path / "run")] == list(range(1, 7))
    assert [r["loss"] for r in metrics(tmp_path / "run")] == [r["loss"] for r in metrics(tmp_path / "ref")]
