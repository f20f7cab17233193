"""Your own videos, end to end through the CLI: a tiny model fine-tuned for retrieval on the tiny benchmark finds, with
`snps3 index` + `snps3 search`, the right clip for the captions it was trained on; a broken file is reported and skipped;
an interrupted `index` continues where it stopped; added files update the index; `snps3 search-eval` measures the share
of annotated captions found; a second `index` on a locked index fails at once, a stale lock is taken over. Also: `train.tensorboard=true` writes
event files that mirror metrics.jsonl, and `papermill nbs/search.ipynb` runs."""
import json, os, shutil, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest

from helpers import ENV, metrics, papermill, run_cli

# The recipe below (tiny_cpu, 150 steps, seed 0, deterministic) put the right clip first for 17 of the 31 train captions
# and in the top 3 for 21 when measured (16 clips, 8 of them unseen hard negatives; chance: 1/16 and 3/16).
TOP1_SHARE, TOP3_SHARE = 0.4, 0.6


@pytest.fixture(scope="module")
def trained(tiny_bench, tmp_path_factory):
    "A tiny model fine-tuned for retrieval on the tiny benchmark's train captions, with TensorBoard on."
    run = tmp_path_factory.mktemp("search") / "run"
    r = run_cli(["finetune", "--config", "tiny_cpu", "--no-progress", "task=retrieval", f"data.root={tiny_bench}",
                 "data.train_ann=retrieval_train.jsonl", "loss.w_mlm=0.0", "loss.mlm_text=false", "loss.lvwm=false",
                 "train.max_steps=150", "train.save_every=0", "train.log_every=5", f"train.save_dir={run}", "train.tensorboard=true"])
    assert r.returncode == 0, r.stderr[-3000:]
    return run


@pytest.fixture
def videos(tiny_bench, tmp_path):
    "A copy of the benchmark's videos (16 mp4 files) that a test may change."
    return Path(shutil.copytree(tiny_bench / "videos", tmp_path / "my videos"))


def _index(videos, run, out, *extra):
    return run_cli(["index", str(videos), "--checkpoint", str(run), "--out", str(out), "--no-progress", *extra])


def _search(out, *args):
    r = run_cli(["search", str(out), *args, "--json"])
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_tensorboard_mirrors_metrics(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    assert list((trained / "tb").glob("events.out.tfevents.*"))
    ea = EventAccumulator(str(trained / "tb")); ea.Reload()
    rows = metrics(trained)
    assert {"loss", "loss/vtc", "loss/cross_match", "lr"} <= set(ea.Tags()["scalars"])
    assert [(e.step, round(e.value, 4)) for e in ea.Scalars("loss")] == [(r["step"], round(r["loss"], 4)) for r in rows]


def test_trained_captions_find_their_clip_and_broken_files_are_skipped(trained, tiny_bench, videos, tmp_path):
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    (videos / "sub").mkdir(); shutil.copy(videos / "v00001.mp4", videos / "sub" / "copy.MP4")
    r = _index(videos, trained, tmp_path / "idx")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "17 videos searchable (exact search); 17 embedded now, 0 already indexed, 1 unreadable" in r.stdout
    assert "unreadable (skipped): broken.mp4" in r.stdout and "broken.mp4" in r.stderr
    assert json.loads((tmp_path / "idx" / "failed.json").read_text())["broken.mp4"]["reason"]
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["preprocessing"]["image_size"] == 32 and manifest["config_hash"]
    # the captions the model was trained on: each one's clip (or its byte-identical copy) comes first for most of them
    recs = [json.loads(l) for l in (tiny_bench / "retrieval_train.jsonl").read_text().splitlines()]
    got = _search(tmp_path / "idx", *[r["caption"] for r in recs], "-k", "4")
    want = [Path(r["clip_name"]).name for r in recs]
    same = lambda p, w: Path(p).name == w or (Path(p).name == "copy.MP4" and w == "v00001.mp4")   # the copy is the same clip
    ranks = [next((i + 1 for i, h in enumerate(q["hits"]) if same(h["path"], w)), 99) for q, w in zip(got["results"], want)]
    top1, top3 = sum(r == 1 for r in ranks) / len(recs), sum(r <= 3 for r in ranks) / len(recs)
    assert top1 >= TOP1_SHARE and top3 >= TOP3_SHARE, (top1, top3, ranks)
    assert all(h["path"].startswith(str(videos)) for q in got["results"] for h in q["hits"])
    # reranking: the top-k carry cross scores, in decreasing order
    hits = _search(tmp_path / "idx", recs[0]["caption"], "-k", "3", "--rerank", "5")["results"][0]["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["cross"] >= hits[1]["cross"] >= hits[2]["cross"]
    text = run_cli(["search", str(tmp_path / "idx"), recs[0]["caption"], "-k", "2"]).stdout
    assert text.startswith("query: ") and "dual" in text and str(videos) in text


def test_interrupted_index_continues_and_added_files_update_it(trained, videos, tmp_path):
    out = tmp_path / "idx"
    # slow each shard down, then kill the process (SIGKILL) once two shards of 2 videos are on disk
    code = ("import time, sys, snps3.search as s\norig = s.write_shard\n"
            "def slow(*a, **k):\n    p = orig(*a, **k); time.sleep(1.5); return p\n"
            "s.write_shard = slow\nfrom snps3.cli import main\n"
            f"sys.exit(main(['index', {str(videos)!r}, '--checkpoint', {str(trained)!r}, '--out', {str(out)!r}, "
            "'--no-progress', '--shard-size', '2', '--batch-size', '2']))")
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while len(list((out / "embeddings").glob("shard_*.safetensors"))) < 2 and proc.poll() is None and time.time() - t0 < 300: time.sleep(0.1)
    proc.send_signal(signal.SIGKILL); proc.wait()
    done = len(list((out / "embeddings").glob("shard_*.safetensors"))) * 2
    assert 4 <= done < 16, done
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    refused = run_cli(["search", str(out), "a red circle"])
    assert refused.returncode == 2 and "incomplete" in refused.stderr
    r = _index(videos, trained, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"16 videos searchable (exact search); {16 - done} embedded now, {done} already indexed" in r.stdout
    # the resumed index answers exactly as one built in a single run
    fresh = tmp_path / "fresh"
    assert _index(videos, trained, fresh).returncode == 0
    q = ["a little red circle bounces", "a blue square moves left"]
    a, b = _search(out, *q, "-k", "16")["results"], _search(fresh, *q, "-k", "16")["results"]
    for x, y in zip(a, b):
        assert [h["path"] for h in x["hits"]] == [h["path"] for h in y["hits"]]
        assert all(abs(h["dual"] - g["dual"]) < 1e-5 for h, g in zip(x["hits"], y["hits"]))
    # adding files embeds only them; a deleted file leaves the index
    for name in ("v00001.mp4", "v00002.mp4"): shutil.copy(videos / name, videos / f"new_{name}")
    (videos / "v00016.mp4").unlink()
    r = _index(videos, trained, out)
    assert "17 videos searchable (exact search); 2 embedded now, 15 already indexed" in r.stdout, r.stdout
    paths = [json.loads(l)["path"] for l in (out / "files.jsonl").read_text().splitlines()]
    assert "new_v00001.mp4" in paths and "v00016.mp4" not in paths and len(paths) == 17
    # another model cannot write into this index
    other = _index(videos, tmp_path / "nowhere", out)
    assert other.returncode == 2 and "no checkpoint found" in other.stderr


def test_search_notebook(trained, tiny_bench, videos, tmp_path):
    ann = tmp_path / "ann.jsonl"                                 # the train captions, clip names under the copied folder
    ann.write_text((tiny_bench / "retrieval_train.jsonl").read_text().replace('"videos/', '"my videos/'))
    nb = papermill("search.ipynb", tmp_path / "search.ipynb", "-p", "video_dir", str(videos), "-p", "checkpoint", str(trained),
                   "-p", "index_dir", str(tmp_path / "idx"), "-p", "k", "3", "-p", "rerank", "4", "-p", "device", "cpu",
                   "-p", "score", "fused", "-p", "ann", str(ann), "-y", "queries: [a little red circle bounces, a green triangle]")
    assert (tmp_path / "idx" / "index.faiss").is_file()
    cells = json.loads(nb.read_text())["cells"]
    images = sum("image/png" in o.get("data", {}) for c in cells if c["cell_type"] == "code" for o in c["outputs"])
    assert images >= 4          # 2 queries × (frame strips + attention heatmap)
    last = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in cells[-1]["outputs"])
    assert "% of captions" in last and "recall@5" in last and '"not_in_index": []' in last, last


def test_explore_notebook_searches_your_folder(trained, tiny_bench, videos, tmp_path):
    (videos / "extra").mkdir(); shutil.copy(videos / "v00003.mp4", videos / "extra" / "mine.mp4")
    nb = papermill("explore.ipynb", tmp_path / "explore.ipynb", "-p", "data_root", str(tiny_bench), "-p", "checkpoint", str(trained),
                   "-p", "video_dir", str(videos), "-p", "query", "a little red circle bounces", "-p", "rerank_k", "4",
                   timeout=240, retry_on_timeout=True)   # ~35 s when it does not hang (see helpers.papermill)
    last = json.loads(nb.read_text())["cells"][-1]["outputs"]
    table = "".join("".join(o.get("data", {}).get("text/plain", "")) for o in last)
    # the top 5 of the folder, named relative to it (test clips would read videos/v000NN.mp4)
    assert table.count(".mp4") == 5 and "videos/" not in table, table


def test_search_eval_measures_the_share(trained, tiny_bench, tmp_path):
    "search-eval's recall@k equals the ranks `snps3 search` gives each annotated caption; the equivalent hit is reported apart."
    out = tmp_path / "idx"
    assert _index(tiny_bench / "videos", trained, out).returncode == 0
    ann = tiny_bench / "retrieval_train.jsonl"
    r = run_cli(["search-eval", str(out), "--ann", str(ann), "-k", "1", "3", "--json"])
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout)
    recs = [json.loads(l) for l in ann.read_text().splitlines() if l.strip()]
    hits = _search(out, *[x["caption"] for x in recs], "-k", "3")["results"]
    ranks = [next((i + 1 for i, h in enumerate(q["hits"]) if Path(h["path"]).name == Path(x["clip_name"]).name), 99) for q, x in zip(hits, recs)]
    assert (got["evaluated"], got["not_in_index"], got["outside_root"]) == (len(recs), [], [])
    assert got["recall@1"] == sum(k == 1 for k in ranks) / len(recs) >= TOP1_SHARE
    assert got["recall@3"] == sum(k <= 3 for k in ranks) / len(recs)
    assert got["scenes"] == str(tiny_bench / "scenes.jsonl") and got["equivalent@3"] >= got["recall@3"]
    text = run_cli(["search-eval", str(out), "--ann", str(ann), "-k", "1", "3", "--rerank", "4", "--score", "fused"]).stdout
    assert "exact clip in the top k (recall@k)" in text and "attribute-equivalent hit (not recall)" in text and "fused score" in text


@pytest.fixture
def tiny_model_and_videos(tmp_path):
    "A tiny random model's run directory and a folder of 3 real clips."
    from snps3.testing import tiny_run_dir, write_test_videos
    write_test_videos(tmp_path / "clips", 3)
    return tiny_run_dir(tmp_path), tmp_path / "clips"


def test_second_index_on_a_locked_index_fails_at_once(tiny_model_and_videos, tmp_path):
    run, clips = tiny_model_and_videos
    out = tmp_path / "idx"; out.mkdir()
    holder = subprocess.Popen(["sleep", "120"])                  # stands for a running `snps3 index` (a live pid on this host)
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00+0000"}
        (out / "index.lock").write_text(json.dumps(lock))
        t0 = time.time(); r = _index(clips, run, out)
        assert r.returncode == 2 and time.time() - t0 < 60
        msg = " ".join(r.stderr.split())
        assert f"{out} is being indexed by another `snps3 index` run (pid {holder.pid} on host {socket.gethostname()}" in msg, msg
        assert f"lock file {out / 'index.lock'}" in msg and f"delete {out / 'index.lock'}" in msg
        assert json.loads((out / "index.lock").read_text()) == lock and not (out / "manifest.json").exists()
    finally: holder.kill(); holder.wait()


def test_stale_lock_is_taken_over_with_a_warning(tiny_model_and_videos, tmp_path):
    run, clips = tiny_model_and_videos
    out = tmp_path / "idx"; out.mkdir()
    gone = subprocess.Popen(["true"]); gone.wait()               # its pid no longer runs
    (out / "index.lock").write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "started": "earlier"}))
    r = _index(clips, run, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"warning: {out / 'index.lock'} was left by pid {gone.pid}" in r.stderr and "taking the lock over" in r.stderr
    assert "3 videos searchable" in r.stdout and not (out / "index.lock").exists()
    assert json.loads((out / "manifest.json").read_text())["complete"]


def test_two_concurrent_index_runs(tiny_model_and_videos, tmp_path):
    """A real `snps3 index` at work holds the lock: a second run on the same index fails at once, naming it. The first run
    is held after its first shard until the test releases it (a fixed sleep raced a slow start of the second run under load)."""
    run, clips = tiny_model_and_videos
    out, release = tmp_path / "idx", tmp_path / "release"
    code = ("import time, sys, pathlib, snps3.search as s\norig = s.write_shard\n"
            f"release = pathlib.Path({str(release)!r})\n"
            "def held(*a, **k):\n    p = orig(*a, **k); t = time.time()\n"
            "    while not release.exists() and time.time() - t < 300: time.sleep(0.05)\n    return p\n"
            "s.write_shard = held\nfrom snps3.cli import main\n"
            f"sys.exit(main(['index', {str(clips)!r}, '--checkpoint', {str(run)!r}, '--out', {str(out)!r}, '--no-progress', '--shard-size', '1']))")
    first = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not list((out / "embeddings").glob("shard_*.safetensors")) and first.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        second = _index(clips, run, out)
        assert first.poll() is None                              # the first run is still at work (held after its first shard)
    finally: release.touch()                                     # a failed assertion must not leave the first run waiting
    msg = " ".join(second.stderr.split())
    assert second.returncode == 2 and f"{out} is being indexed by another `snps3 index` run (pid {first.pid} on host" in msg, msg
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0 and "3 videos searchable" in stdout, stderr[-3000:]
    assert not (out / "index.lock").exists() and json.loads((out / "manifest.json").read_text())["complete"]
