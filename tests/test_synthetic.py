"""The embedded benchmark: deterministic bytes, decodable videos, held-out test clips."""
import json, subprocess, sys
from pathlib import Path

import decord
import numpy as np

from snps3.core import read_jsonl
from snps3.data.synthetic import ANNOTATION_FILES, VIDEO, make_synthetic

ROOT = Path(__file__).resolve().parents[1]


def test_same_seed_same_bytes(tmp_path):
    "Two generations with one seed: identical manifests and annotation files (the manifest hashes every video too)."
    a, b = make_synthetic(tmp_path / "a", seed=3, size="tiny"), make_synthetic(tmp_path / "b", seed=3, size="tiny")
    assert a == b
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    for k in ANNOTATION_FILES:
        assert (tmp_path / "a" / f"{k}.jsonl").read_bytes() == (tmp_path / "b" / f"{k}.jsonl").read_bytes()
    assert make_synthetic(tmp_path / "c", seed=4, size="tiny")["files"]["pretrain.jsonl"] != a["files"]["pretrain.jsonl"]


def test_script_in_fresh_process_matches(tmp_path):
    "data_prep/make_synthetic.py in another process writes the same bytes as an in-process call."
    mine = make_synthetic(tmp_path / "here", seed=0, size="tiny")
    r = subprocess.run([sys.executable, str(ROOT / "data_prep" / "make_synthetic.py"), "--out", str(tmp_path / "there"), "--size", "tiny"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "there" / "manifest.json").read_text()) == mine


def test_videos_decode_with_decord(tmp_path):
    "Every mp4 is real H.264 that decord reads, with the frame count the manifest records; keyframes every 8 frames."
    m = make_synthetic(tmp_path / "d", seed=0, size="tiny")
    videos = {k: v for k, v in m["files"].items() if k.endswith(".mp4")}
    assert len(videos) == m["counts"]["pretrain_videos"] + m["counts"]["test_clips"]
    for rel, entry in videos.items():
        vr = decord.VideoReader(str(tmp_path / "d" / rel))
        assert len(vr) == entry["frames"] and VIDEO["min_frames"] <= entry["frames"] <= VIDEO["max_frames"]
        assert vr.get_batch(list(range(len(vr)))).asnumpy().shape == (len(vr), VIDEO["side"], VIDEO["side"], 3)
        assert vr.get_avg_fps() == VIDEO["fps"]
        keys = vr.get_key_indices()
        assert keys[0] == 0 and max(np.diff(keys + [len(vr)])) <= VIDEO["gop"]


def test_held_out_and_hard_negatives(tiny_bench):
    "Test clips never appear in pre-training; each has a partner clip differing in exactly one attribute."
    pre = {r["clip_name"] for r in read_jsonl(tiny_bench / "pretrain.jsonl")}
    test = {r["clip_name"] for r in read_jsonl(tiny_bench / "retrieval_test.jsonl")}
    assert test and not (test & pre)
    scenes = {r["clip_name"]: r for r in read_jsonl(tiny_bench / "scenes.jsonl")}
    by_pair = {}
    for c in test: by_pair.setdefault(scenes[c]["pair"], []).append(scenes[c])
    for a, b in by_pair.values():
        diffs = [(i, k) for i, (p, q) in enumerate(zip(a["objects"], b["objects"])) for k in ("shape", "colour", "size", "action") if p[k] != q[k]]
        assert [k for _, k in diffs] == [a["differs_in"]]
    for r in read_jsonl(tiny_bench / "mc_test.jsonl"):
        assert r["clip_name"] in test and len(set(r["options"])) == 5 and 0 <= r["answer"] < 5
