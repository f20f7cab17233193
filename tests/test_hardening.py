"""Hostile and broken inputs through the real CLI: media-root containment, no hang when nothing is readable,
skip accounting by distinct file and kind, captions without a word, tie counts and DiDeMo windows in evaluation."""
import json, os, shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from helpers import pretrain_args, run_cli


def copy_bench(bench, dst):
    "A private copy of the tiny benchmark that a test may damage."
    shutil.copytree(bench, dst)
    return dst


def audio_only_mp4(path):
    "An mp4 holding only an AAC audio stream (a real file that is not a video)."
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(4):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for p in s.encode(f): c.mux(p)
        for p in s.encode(): c.mux(p)
    return path


def write_ann(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_ann(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


def error_line(r):
    "The CLI's stderr must be exactly one `error: ...` line (no traceback) and the status 2."
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    return lines[0]


# ---------------------------------------------------------------- 1. containment
def test_clip_names_outside_the_media_root_are_refused(tiny_bench, tmp_path):
    root = copy_bench(tiny_bench, tmp_path / "root")
    secret = tmp_path / "secret.mp4"; shutil.copy(root / "videos" / "v00001.mp4", secret)
    (root / "videos" / "link.mp4").symlink_to(secret)                        # a symlink inside the root that points out
    recs = read_ann(root / "pretrain.jsonl")
    write_ann(root / "evil.jsonl", recs[:3] + [{"clip_name": "videos/link.mp4", "caption": "a red circle", "type": "video"}] + recs[3:])
    r = run_cli(pretrain_args(root, tmp_path / "run", "train.max_steps=1", "data.train_ann=evil.jsonl"))
    line = error_line(r)
    assert f"{root / 'evil.jsonl'}:4: clip_name 'videos/link.mp4' leads outside the media root" in line, line
    assert "data.allow_outside_root=true" in line
    # '..' and absolute paths, in the library (same check), and the explicit opt-in
    from snps3.data.datasets import load_annotations
    for name in ("../secret.mp4", str(secret), "videos/../../secret"):
        write_ann(root / "evil.jsonl", recs[:1] + [{"clip_name": name, "caption": "a red circle"}])
        with pytest.raises(ValueError, match=f"evil.jsonl:2: clip_name '{name}' leads outside the media root"):
            load_annotations(root / "evil.jsonl", "pretrain", root)
        assert len(load_annotations(root / "evil.jsonl", "pretrain", root, allow_outside_root=True)) == 2
    # evaluation and the gallery: the same refusal (eval reads the annotation file before touching any checkpoint weights)
    write_ann(root / "retrieval_evil.jsonl", [{"clip_name": "../secret", "caption": "a red circle", "sen_id": 0}])
    ok = run_cli(pretrain_args(root, tmp_path / "ok", "train.max_steps=1"))
    assert ok.returncode == 0, ok.stderr[-3000:]
    r = run_cli(["eval", "--config", "tiny_cpu", "--no-progress", "task=retrieval", f"data.root={root}", f"eval.checkpoint={tmp_path / 'ok'}",
                 "eval.ann=retrieval_evil.jsonl", f"train.save_dir={tmp_path / 'ev'}"])
    assert "retrieval_evil.jsonl:1: clip_name '../secret' leads outside the media root" in error_line(r)


def test_dataset_refuses_outside_paths_at_read_time(tiny_bench, tmp_path):
    "Defence in depth: names that reach a dataset without the annotation check are skipped as kind outside_root."
    from snps3.data.datasets import ClipDataset
    root = copy_bench(tiny_bench, tmp_path / "root")
    shutil.copy(root / "videos" / "v00001.mp4", tmp_path / "secret.mp4")
    ds = ClipDataset(["videos/v00001.mp4", "../secret.mp4"], root, 2, 1, 32)
    assert "video" in ds[0]
    assert (ds[1]["kind"], "outside the media root" in ds[1]["reason"]) == ("outside_root", True)
    assert "video" in ClipDataset(["../secret.mp4"], root, 2, 1, 32, allow_outside_root=True)[0]


# ---------------------------------------------------------------- 2. no hang when nothing is readable
def test_nothing_readable_stops_with_a_clear_error(tiny_bench, tmp_path):
    "Audio-only files, a symlink loop, a text file named .mp4, a missing file: the run stops (it used to loop forever)."
    root = tmp_path / "root"; (root / "videos").mkdir(parents=True)
    audio_only_mp4(root / "videos" / "a0.mp4"); audio_only_mp4(root / "videos" / "a1.mp4")
    (root / "videos" / "loop1.mp4").symlink_to(root / "videos" / "loop2.mp4"); (root / "videos" / "loop2.mp4").symlink_to(root / "videos" / "loop1.mp4")
    (root / "videos" / "notes.mp4").write_text("not a video\n" * 50)
    names = ["a0", "a1", "loop1", "notes", "gone"] * 2
    write_ann(root / "pretrain.jsonl", [{"clip_name": f"videos/{n}.mp4", "caption": f"a red circle number {i}"}
                                        for i, n in enumerate(names)])
    r = run_cli(pretrain_args(root, tmp_path / "run", "train.max_steps=5", "data.batch_size=5"), timeout=180)
    line = error_line(r)
    assert "training stopped" in line and "distinct files tried and none could be read" in line, line
    assert "no_video_stream" in line and "symlink_loop" in line and "missing" in line and "not_a_video" in line, line
    assert f"Data root: {root}" in line, line


def _stream(n_items, bad, micro=4, max_skips=256):
    "A BatchStream over a dataset whose items in `bad` are unreadable (skip_info dicts like the real datasets return)."
    from snps3.data.datasets import GlobalBatchSampler, skip_info
    from snps3.data.video import MediaError
    from snps3.train import BatchStream, PretrainData
    from torch.utils.data import DataLoader

    class Items(torch.utils.data.Dataset):
        root = "/media"
        def __len__(self): return n_items
        def set_epoch(self, e): pass
        def __getitem__(self, i):
            if i in bad: return skip_info(MediaError(f"/media/{i}.mp4", "symlink loop", kind="symlink_loop"), i)
            return {"video": torch.zeros(1), "index": i}

    def collate(samples):
        good, skipped = [s for s in samples if "video" in s], [s for s in samples if "skipped" in s]
        out = {"n_skipped": len(skipped), "skipped": skipped}
        if good: out.update(video=torch.stack([s["video"] for s in good]), index=torch.tensor([s["index"] for s in good]))
        return out
    sampler = GlobalBatchSampler(n_items, micro, shuffle=True, seed=0)
    data = PretrainData(Items(), sampler, DataLoader(Items(), batch_sampler=sampler, collate_fn=collate), None, micro, None, dropped={}, max_skips=max_skips)
    return BatchStream(data)


def test_skipping_memory_is_flat_and_bounded():
    "Many epochs over the same broken files: the skip log holds each file once; consecutive skips are bounded."
    s = _stream(16, bad={1, 5, 9})
    for _ in range(200): s.next()                                           # 50 epochs
    assert len(s.skips) == 3 and len(s.skips.files) == 3
    assert s.skips.summary()["skipped_by_kind"] == {"symlink_loop": 3}
    s = _stream(16, bad=set(range(16)), max_skips=10)
    with pytest.raises(ValueError, match=r"12 unreadable samples in a row \(data.max_skips=10\)"): s.next()
    s = _stream(16, bad=set(range(16)), max_skips=10_000)                  # the limit is high: a whole epoch without a batch stops it
    with pytest.raises(ValueError, match="a whole epoch gave no readable batch.*16 distinct files tried.*Data root: /media"): s.next()


# ---------------------------------------------------------------- 3. + 4. accounting, captions without a word
def test_skip_accounting_counts_distinct_files_with_kinds(tiny_bench, tmp_path):
    root = copy_bench(tiny_bench, tmp_path / "root")
    (root / "videos" / "v00002.mp4").write_text("this is not a video\n" * 20)            # a pre-training clip
    os.remove(root / "videos" / "v00003.mp4"); (root / "videos" / "v00003.mp4").symlink_to(root / "videos" / "v00003.mp4")  # loop
    os.remove(root / "videos" / "v00010.mp4")                                            # a validation / test clip
    with open(root / "pretrain.jsonl", "a") as f: f.write(json.dumps({"clip_name": "videos/v00001.mp4", "caption": "!!! ... ???"}) + "\n")
    run = tmp_path / "run"
    r = run_cli(pretrain_args(root, run, "train.max_steps=6", "train.eval_every=3"))
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["skipped_media"] == 2, s                                                    # files, not occurrences over 6 epochs
    assert s["skipped_by_kind"] == {"not_a_video": 1, "symlink_loop": 1}, s
    assert {e["kind"]: e["reason"] for e in s["skipped_examples"]}["symlink_loop"] == "symlink loop"
    assert s["dropped_annotations"] == {"caption has no word": 1}, s
    val = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if "val/t2v/R@1" in l]
    assert val and all(v["val/skipped_media"] == 1 and v["val/skipped/missing"] == 1 for v in val), val
    n_cap_10 = sum(r["clip_name"] == "videos/v00010.mp4" for r in read_ann(root / "retrieval_test.jsonl"))
    assert all(v["val/skipped_captions"] == n_cap_10 for v in val), val
    # evaluation: the unreadable clip leaves the gallery with its captions; results.json says how many and why
    r = run_cli(["eval", "--config", "tiny_cpu", "--no-progress", "task=retrieval", f"data.root={root}", f"eval.checkpoint={run}",
                 f"train.save_dir={tmp_path / 'ev'}", "eval.rerank_k=0"])
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    m, caps = res["metrics"], read_ann(root / "retrieval_test.jsonl")
    assert (m["skipped_media"], m["skipped/missing"], m["skipped_captions"]) == (1, 1, n_cap_10), m
    assert (m["n_clips"], m["n_captions"]) == (7, len(caps) - n_cap_10), m
    assert res["skipped"]["skipped_examples"][0]["path"].endswith("videos/v00010.mp4")
    assert "dual/t2v/tied" in m and "cross/v2t/tied" in m                       # queries where the tie rule (eval.ties) mattered
    # multiple choice: the question on the unreadable clip is left out and counted
    r = run_cli(["eval", "--config", "tiny_cpu", "--no-progress", "task=mc", f"data.root={root}", f"eval.checkpoint={run}",
                 f"train.save_dir={tmp_path / 'mc'}"])
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "mc" / "results.json").read_text())["metrics"]
    n_q10 = sum(q["clip_name"] == "videos/v00010.mp4" for q in read_ann(root / "mc_test.jsonl"))
    assert n_q10 and (m["skipped_questions"], m["evaluated"]) == (n_q10, m["n_questions"] - n_q10), m


# ---------------------------------------------------------------- 5. DiDeMo windows in evaluation
def test_evaluation_clips_use_the_moment_window(tiny_bench):
    "A record with start / end (DiDeMo) is encoded from its window, as in training; without one, from the whole video."
    from snps3.data.datasets import ClipDataset, clip_windows
    name = "videos/v00001.mp4"
    whole = ClipDataset([name], tiny_bench, 2, 1, 32)[0]["video"]
    early = ClipDataset([name], tiny_bench, 2, 1, 32, windows=clip_windows([{"clip_name": name, "start": 0.0, "end": 0.5}]))[0]["video"]
    late = ClipDataset([name], tiny_bench, 2, 1, 32, windows={name: (3.0, None)})[0]["video"]
    assert not torch.equal(whole, early) and not torch.equal(early, late)
