"""data_prep/convert.py, build_answer_vocab.py and reencode.py on small files written in the official formats."""
import importlib.util, json, os, pickle, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from snps3.data.datasets import load_annotations

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def script(name):
    "Import data_prep/<name>.py as a module (its `main(argv)` is the command line)."
    spec = importlib.util.spec_from_file_location(f"data_prep_{name}", ROOT / "data_prep" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True); path.write_text(text, encoding="utf-8"); return path


def wjson(path, obj): return write(path, json.dumps(obj))


@pytest.fixture
def convert(capsys):
    "Run `convert.py ARGS` in-process; returns (exit status, stdout, stderr)."
    mod = script("convert")
    def run(*args):
        rc = mod.main([str(a) for a in args])
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run


# ---------------------------------------------------------------- MSRVTT

def msrvtt_files(d):
    videos = [{"category": 1, "url": "u", "video_id": f"video{i}", "start time": 0.0, "end time": 10.0, "id": i,
               "split": "train" if i < 3 else "validate" if i < 4 else "test"} for i in range(6)]
    sentences = [{"caption": f"caption {k} of video {i}", "video_id": f"video{i}", "sen_id": 2 * i + k} for i in range(6) for k in range(2)]
    sentences.append({"video_id": "video0", "sen_id": 99})                                            # bad: no caption
    data = wjson(d / "MSRVTT_data.json", {"info": {}, "videos": videos, "sentences": sentences})
    train9k = write(d / "MSRVTT_train.9k.csv", "video_id\nvideo0\nvideo1\nvideo2\nvideo3\n")
    test = write(d / "MSRVTT_JSFUSION_test.csv", ",key,vid_key,video_id,sentence\n"
                 "0,ret0,msr4,video4,a man is talking\n1,ret1,msr5,video5,\"a woman, smiling, sings\"\n")
    return data, train9k, test


def test_msrvtt_splits(tmp_path, convert):
    data, train9k, test = msrvtt_files(tmp_path)
    rc, out, _ = convert("msrvtt", "--data", data, "--split", "9k", "--train-list", train9k, "--test-csv", test,
                         "--out", tmp_path / "ann" / "train9k.jsonl", "--report", tmp_path / "r.json")
    assert rc == 0, out
    recs = load_annotations(tmp_path / "ann" / "train9k.jsonl", "retrieval")
    assert len(recs) == 8 and {r["clip_name"] for r in recs} == {"video0", "video1", "video2", "video3"}
    assert "dropped 1: missing field 'caption' (first: MSRVTT_data.json: sentences[12])" in out
    assert "should hold 9000 videos" in out                                       # a 4-video list is flagged
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["kept"], report["clips"], report["split"]) == (8, 4, "9k")

    rc, out, _ = convert("msrvtt", "--split", "jsfusion_test", "--test-csv", test, "--out", tmp_path / "test.jsonl")
    recs = load_annotations(tmp_path / "test.jsonl", "retrieval")
    assert rc == 0 and [(r["clip_name"], r["sen_id"]) for r in recs] == [("video4", 0), ("video5", 1)]
    assert recs[1]["caption"] == "a woman, smiling, sings"

    rc, out, _ = convert("msrvtt", "--data", data, "--split", "official_val", "--out", tmp_path / "val.jsonl")
    assert rc == 0 and [r["clip_name"] for r in load_annotations(tmp_path / "val.jsonl", "retrieval")] == ["video3", "video3"]


def test_msrvtt_errors_name_the_file(tmp_path, convert):
    data, _, _ = msrvtt_files(tmp_path)
    rc, _, err = convert("msrvtt", "--data", data, "--split", "7k", "--out", tmp_path / "x.jsonl")
    assert rc == 1 and "needs the train list MSRVTT_train.7k.csv" in err
    broken = write(tmp_path / "MSRVTT_broken.json", '{"videos": [')
    rc, _, err = convert("msrvtt", "--data", broken, "--split", "official_test", "--out", tmp_path / "x.jsonl")
    assert rc == 1 and "MSRVTT_broken.json: malformed JSON" in err
    assert not (tmp_path / "x.jsonl").exists()


def test_script_entrypoint(tmp_path):
    "The real command line: exit 0 and a jsonl; a wrong split is a usage error (exit 2)."
    _, _, test = msrvtt_files(tmp_path)
    cmd = [sys.executable, str(ROOT / "data_prep" / "convert.py"), "msrvtt", "--split", "jsfusion_test", "--test-csv", str(test)]
    p = subprocess.run(cmd + ["--out", str(tmp_path / "t.jsonl")], capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "kept 2 records on 2 clips" in p.stdout and len(load_annotations(tmp_path / "t.jsonl", "retrieval")) == 2
    p = subprocess.run(cmd[:3] + ["--split", "1k", "--out", "x"], capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 2 and "invalid choice: '1k'" in p.stderr


# ---------------------------------------------------------------- QA

def test_msrvtt_qa_and_msvd_qa(tmp_path, convert):
    qa = wjson(tmp_path / "train_qa.json", [
        {"answer": "man", "id": 0, "question": "who is driving?", "video_id": 0},
        {"answer": "car", "id": 1, "question": "what is red?", "video_id": 7010},
        {"answer": "dog", "id": 2, "question": "what runs?"}])                                        # bad
    rc, out, _ = convert("msrvtt-qa", "--qa", qa, "--out", tmp_path / "qa.jsonl")
    recs = load_annotations(tmp_path / "qa.jsonl", "qa")
    assert rc == 0 and [(r["clip_name"], r["label"], r["qid"]) for r in recs] == [("video0", "man", 0), ("video7010", "car", 1)]
    assert "dropped 1: missing field 'video_id'" in out

    mapping = write(tmp_path / "youtube_mapping.txt", "-4wsuPCjDBc_5_15 vid1\n-7KMZQEsJW4_205_208 vid2\n")
    qa = wjson(tmp_path / "msvd_test_qa.json", [
        {"answer": "tomato", "id": 30933, "question": "what is sliced?", "video_id": 1},
        {"answer": "cat", "id": 30934, "question": "what jumps?", "video_id": 1971}])                  # not in the mapping
    rc, out, _ = convert("msvd-qa", "--qa", qa, "--mapping", mapping, "--out", tmp_path / "msvd_qa.jsonl")
    recs = load_annotations(tmp_path / "msvd_qa.jsonl", "qa")
    assert rc == 0 and recs[0]["clip_name"] == "-4wsuPCjDBc_5_15" and len(recs) == 1
    assert "video_id not found" in out


# ---------------------------------------------------------------- MSVD captions + unsafe pickles

class Payload:
    "What a malicious caption file would carry: unpickling it creates a file."
    def __init__(self, target): self.target = str(target)
    def __reduce__(self): return (os.system, (f"touch {self.target}",))


def test_msvd_captions(tmp_path, convert):
    pkl = tmp_path / "raw-captions.pkl"
    pkl.write_bytes(pickle.dumps({"-4wsuPCjDBc_5_15": [["a", "man", "slices", "a", "tomato"], ["someone", "cuts"]],
                                  "-7KMZQEsJW4_205_208": [["a", "dog", "runs"]]}))
    lst = write(tmp_path / "test_list.txt", "-4wsuPCjDBc_5_15\n-7KMZQEsJW4_205_208\nmissing_1_2\n")
    rc, out, _ = convert("msvd", "--captions", pkl, "--split-list", lst, "--out", tmp_path / "msvd.jsonl")
    recs = load_annotations(tmp_path / "msvd.jsonl", "retrieval")
    assert rc == 0 and len(recs) == 3 and recs[0]["caption"] == "a man slices a tomato"
    assert "dropped 1: listed video not in the captions file (first: missing_1_2)" in out


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_restricted_unpickler_refuses_payload(tmp_path, convert, protocol):
    target = tmp_path / "pwned"
    evil = tmp_path / "raw-captions.pkl"
    evil.write_bytes(pickle.dumps({"-4wsuPCjDBc_5_15": [["a", "man"]], "x": Payload(target)}, protocol=protocol))
    lst = write(tmp_path / "test_list.txt", "-4wsuPCjDBc_5_15\n")
    rc, _, err = convert("msvd", "--captions", evil, "--split-list", lst, "--out", tmp_path / "msvd.jsonl")
    assert rc == 1 and "refusing to load the global" in err and "raw-captions.pkl" in err
    assert not target.exists(), "the pickle payload was executed"
    assert not (tmp_path / "msvd.jsonl").exists()


# ---------------------------------------------------------------- multiple choice, DiDeMo

def test_msrvtt_mc(tmp_path, convert):
    opts = ["a girl does makeup", "a man plays football", "a cat sleeps", "people dance", "a car drives"]
    mc = write(tmp_path / "msrvtt_mc_test.jsonl", "\n".join(json.dumps(q) for q in [
        {"qid": 0, "clip_name": "video7010", "options": opts, "answer": 0},
        {"qid": 1, "clip_name": "video7011", "options": opts, "answer": 5}]) + "\n")                # bad answer
    rc, out, _ = convert("msrvtt-mc", "--mc", mc, "--out", tmp_path / "mc.jsonl")
    recs = load_annotations(tmp_path / "mc.jsonl", "mc")
    assert rc == 0 and recs[0]["options"] == opts and len(recs) == 1 and "answer is not an index 0-4" in out

    head = "key\tvid_key\tvideo_id\ta1\ta2\ta3\ta4\ta5\tanswer\n"
    csv = write(tmp_path / "MSR_MC_test.csv", head + "mc0\tmsr7010\tvideo7010\t" + "\t".join(opts) + "\t2\n")
    rc, _, err = convert("msrvtt-mc", "--mc", csv, "--out", tmp_path / "mc2.jsonl")
    assert rc == 1 and "pass answer_base=0 or 1" in err
    rc, _, _ = convert("msrvtt-mc", "--mc", csv, "--answer-base", "1", "--out", tmp_path / "mc2.jsonl")
    assert rc == 0 and load_annotations(tmp_path / "mc2.jsonl", "mc")[0]["answer"] == 1


def test_didemo(tmp_path, convert):
    data = wjson(tmp_path / "test_data.json", [
        {"annotation_id": 7, "description": "the dog jumps", "video": "1@N0_2_ab.mov", "times": [[2, 3], [2, 3], [2, 2], [3, 3]]},
        {"annotation_id": 6, "description": "a dog runs", "video": "1@N0_2_ab.mov", "times": [[0, 1], [0, 0], [0, 1], [0, 1]]},
        {"annotation_id": 8, "description": "broken", "video": "1@N0_2_ab.mov", "times": [[7, 9]]}])      # bad
    rc, out, _ = convert("didemo", "--data", data, "--out", tmp_path / "didemo.jsonl")
    recs = load_annotations(tmp_path / "didemo.jsonl", "retrieval")
    assert rc == 0 and len(recs) == 1
    r = recs[0]
    assert (r["clip_name"], r["caption"], r["start"], r["end"]) == ("1@N0_2_ab", "a dog runs the dog jumps", 0.0, 18.75)
    assert [m["times"] for m in r["moments"]] == [[[0, 1], [0, 0], [0, 1], [0, 1]], [[2, 3], [2, 3], [2, 2], [3, 3]]]
    assert "malformed 'times'" in out


# ---------------------------------------------------------------- pre-training corpora

def test_pretrain_corpora(tmp_path, convert):
    media = tmp_path / "media"
    webvid = write(tmp_path / "results_2M_val.csv", "videoid,contentUrl,duration,page_dir,name\n"
                   '31353427,https://ak.picdn.net/a.mp4,PT00H00M15S,009701_009750,"Merida, mexico: tourists walk"\n'
                   "14781349,https://ak.picdn.net/b.mp4,PT00H00M09S,1048101_1048150,Happy family using laptop\n")
    write(media / "009701_009750" / "31353427.mp4", "x")                        # only the first video was downloaded
    rc, out, _ = convert("webvid", "--csv", webvid, "--media-root", media, "--out", tmp_path / "webvid.jsonl")
    recs = load_annotations(tmp_path / "webvid.jsonl", "pretrain")
    assert rc == 0 and recs == [{"clip_name": "009701_009750/31353427.mp4", "caption": "Merida, mexico: tourists walk", "type": "video", "_line": 1}]
    assert "dropped 1: media file missing under the media root" in out

    tsv = write(tmp_path / "Train_GCC-training.tsv", "a dog on a sofa\thttp://x/1.jpg\nbroken line\n\"quoted\" caption\thttp://x/2.jpg\n")
    rc, out, _ = convert("cc3m", "--tsv", tsv, "--out", tmp_path / "cc3m.jsonl")
    recs = load_annotations(tmp_path / "cc3m.jsonl", "pretrain")
    assert rc == 0 and [r["clip_name"] for r in recs] == ["cc3m/train/00000000.jpg", "cc3m/train/00000002.jpg"]
    assert recs[1]["caption"] == '"quoted" caption' and {r["type"] for r in recs} == {"image"}

    coco = wjson(tmp_path / "captions_train2017.json", {
        "images": [{"id": 9, "file_name": "000000000009.jpg", "height": 480, "width": 640}],
        "annotations": [{"image_id": 9, "id": 1, "caption": "Closeup of bins of food.\n"}, {"image_id": 10, "id": 2, "caption": "x"}]})
    rc, out, _ = convert("coco", "--captions", coco, "--out", tmp_path / "coco.jsonl")
    recs = load_annotations(tmp_path / "coco.jsonl", "pretrain")
    assert rc == 0 and recs[0]["clip_name"] == "train2017/000000000009.jpg" and recs[0]["caption"] == "Closeup of bins of food."
    assert "image_id not in 'images'" in out

    vg = wjson(tmp_path / "region_descriptions.json", [{"id": 1, "regions": [
        {"region_id": 1382, "width": 82, "height": 139, "image_id": 1, "phrase": "the clock is green", "y": 57, "x": 421},
        {"region_id": 1383, "width": 5, "height": 5, "image_id": 1, "phrase": "", "y": 0, "x": 0}]}])
    rc, out, _ = convert("vg", "--regions", vg, "--out", tmp_path / "vg.jsonl")
    recs = load_annotations(tmp_path / "vg.jsonl", "pretrain")
    assert rc == 0 and recs[0]["clip_name"] == "VG_100K/1.jpg" and recs[0]["sen_id"] == 1382 and "dropped 1: empty phrase" in out


# ---------------------------------------------------------------- answer vocabulary, re-encoding

def test_build_answer_vocab(tmp_path, capsys):
    lines = lambda answers: "".join(json.dumps({"clip_name": "video0", "caption": f"q{i}?", "label": a, "qid": i}) + "\n" for i, a in enumerate(answers))
    train = write(tmp_path / "train.jsonl", lines(["man", "man", "dog", "cat", "cat", "bird"]))
    test = write(tmp_path / "test.jsonl", lines(["man", "zebra", "bird", "cat"]))
    rc = script("build_answer_vocab").main(["--train", str(train), "--top-n", "3", "--out", str(tmp_path / "answers.json"),
                                            "--eval", str(test)])
    out = capsys.readouterr().out
    assert rc == 0 and json.loads((tmp_path / "answers.json").read_text()) == ["cat", "man", "bird"]
    assert "train OOV: 1 questions (16.67%)" in out and "OOV 1 of 4 (25.00%)" in out


def test_reencode_script(tmp_path, capsys):
    import decord
    from snps3.data.video import write_video
    src = tmp_path / "raw"
    write_video(src / "sub" / "video1.avi", (np.arange(30 * 48 * 64 * 3) % 251).astype(np.uint8).reshape(30, 48, 64, 3), fps=10, gop=30, codec="mpeg4")
    write(src / "video2.mp4", "not a video")
    rc = script("reencode").main(["--src", str(src), "--dst", str(tmp_path / "out"), "--fps", "5", "--short-side", "32",
                                  "--report", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "2 videos found, 1 written" in out and "skipped 1: not decodable" in out
    vr = decord.VideoReader(str(tmp_path / "out" / "sub" / "video1.mp4"))
    assert (len(vr), vr.get_avg_fps()) == (15, 5.0) and vr[0].shape[:2] == (32, 42)
    assert json.loads((tmp_path / "r.json").read_text())["skipped"] == {"not decodable": 1}
