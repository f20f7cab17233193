"""Property-based tests (hypothesis) of what reads untrusted text: the jsonl reader, annotation loading, the config override
parser and the dataset converters. Arbitrary unicode, control characters, huge numbers, wrong types, missing and extra keys,
random truncation. Invariant: a clear `ValueError` naming the file and line (or the key), or a result that round-trips;
never another exception from deep inside a library, never a hang, never a record silently altered."""
import json, math, tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from snps3.config import flat_keys, load_config, save_config, Config
from snps3.core import read_jsonl
from snps3.data.datasets import load_annotations, has_word

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values: any unicode text (control characters included), huge integers, finite floats, nesting
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
huge = st.integers(min_value=-10**300, max_value=10**300)
scalars = st.none() | st.booleans() | huge | st.floats(allow_nan=False, allow_infinity=False) | text
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4), max_leaves=12)
objects = st.dictionaries(text, values, max_size=6)


def tmpfile(name: str, data: bytes) -> Path:
    d = Path(tempfile.mkdtemp()); p = d / name; p.write_bytes(data)
    return p


def jsonl_bytes(objs, bom=False, ensure_ascii=False) -> bytes:
    return (b"\xef\xbb\xbf" if bom else b"") + "".join(json.dumps(o, ensure_ascii=ensure_ascii) + "\n" for o in objs).encode("utf-8")


# ---------------------------------------------------------------- jsonl reader
@SETTINGS
@given(st.lists(objects, max_size=8), st.booleans(), st.booleans())
def test_jsonl_round_trips(objs, bom, ensure_ascii):
    p = tmpfile("a.jsonl", jsonl_bytes(objs, bom, ensure_ascii))
    assert read_jsonl(p) == objs


@SETTINGS
@given(st.lists(objects, min_size=1, max_size=6), st.data())
def test_truncated_jsonl_reads_the_complete_lines_or_names_the_cut_line(objs, data):
    full = jsonl_bytes(objs)
    cut = data.draw(st.integers(0, len(full)))
    p = tmpfile("t.jsonl", full[:cut])
    complete = full[:cut].count(b"\n")                                       # lines that survived whole
    try: got = read_jsonl(p)
    except ValueError as e:
        assert f"{p}:{complete + 1}:" in str(e), str(e)                       # the cut line, by number
        return
    assert got[:complete] == objs[:complete]                                 # never a record altered
    assert len(got) in (complete, complete + 1)                              # a cut that leaves valid JSON (e.g. after '}')
    if len(got) == complete + 1: assert got[-1] == objs[complete]


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_another_exception(data):
    p = tmpfile("b.jsonl", data)
    try: out = read_jsonl(p)
    except ValueError as e:
        assert str(e).startswith(f"{p}:"), str(e)
        return
    assert all(isinstance(o, dict) for o in out)


def test_deep_nesting_and_huge_numbers_are_clear_errors():
    for body in ("[" * 50000 + "]" * 50000, '{"a": ' + "9" * 6000 + "}"):
        p = tmpfile("d.jsonl", (body + "\n").encode())
        with pytest.raises(ValueError, match=f"{p}:1:"): read_jsonl(p)


# ---------------------------------------------------------------- annotation loading
fields = st.sampled_from(["clip_name", "caption", "type", "label", "qid", "options", "answer", "sen_id", "start", "end", "extra"])
records = st.dictionaries(fields | text, values | text, max_size=6)


@SETTINGS
@given(st.lists(records, min_size=1, max_size=6), st.sampled_from(["pretrain", "retrieval", "qa", "mc"]))
def test_annotations_load_exactly_or_name_file_and_line(recs, kind):
    d = Path(tempfile.mkdtemp()); (d / "media").mkdir()
    p = d / "ann.jsonl"; p.write_bytes(jsonl_bytes(recs))
    try: out = load_annotations(p, kind, d / "media")
    except ValueError as e:
        assert str(e).startswith(f"{p}:") or str(e).startswith(f"{p}: no annotations"), str(e)
        return
    kept = [r for r in recs if kind == "mc" or has_word(r["caption"])]
    assert [{k: v for k, v in o.items() if k != "_line"} for o in out] == kept   # what loads is exactly what was written


# ---------------------------------------------------------------- config overrides
KEYS = list(flat_keys(Config()))


@SETTINGS
@given(st.sampled_from(KEYS) | text, text | st.sampled_from(["1e999", "[" * 3000, "9" * 5000, ".nan", "null", "~", "[1, 2]", "{a: 1}"]))
def test_any_override_is_applied_or_refused_naming_the_key(key, value):
    item = f"{key}={value}"
    assume("=" not in key)
    try: cfg = load_config(None, [item])
    except ValueError as e:
        assert key.strip() in str(e) or item in str(e) or repr(item) in str(e), str(e)
        return
    got = flat_keys(cfg)[key.strip()]
    if isinstance(got, str): assert got == value.strip() or value.strip()[:1] in "'\"", (value, got)  # text is kept as typed
    if isinstance(got, float): assert math.isfinite(got)


FREE_TEXT_KEYS = ("data.root", "data.train_ann", "data.val_ann", "data.words_file", "data.lemma_file", "model.vision_weights",
                  "train.save_dir", "train.resume", "train.restart", "eval.ann", "eval.dataset", "eval.checkpoint", "eval.split")


@SETTINGS
@given(st.data())
def test_a_config_round_trips_through_config_yaml(data):
    "Set keys to arbitrary valid values (any unicode text for text keys); config.yaml reloads to the same config."
    cfg = Config()
    for key in FREE_TEXT_KEYS:
        if data.draw(st.booleans()): continue
        new = data.draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20))
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, new)
    p = Path(tempfile.mkdtemp()) / "config.yaml"
    save_config(cfg, p)
    assert flat_keys(load_config(str(p))) == flat_keys(cfg)


# ---------------------------------------------------------------- converters
from snps3.data import convert as C

junk = values | text


@SETTINGS
@given(st.lists(st.dictionaries(st.sampled_from(["question", "answer", "video_id", "id", "x"]), junk | huge, max_size=5), max_size=6))
def test_qa_converter_keeps_exact_text_or_drops_with_a_reason(items):
    p = tmpfile("train_qa.json", json.dumps(items).encode())
    recs, rep = C.msrvtt_qa(p)
    assert rep["kept"] + sum(rep["dropped"].values()) == len(items)
    for r in recs:
        src = next(q for q in items if isinstance(q, dict) and C._msrvtt_clip(q.get("video_id")) == r["clip_name"]
                   and " ".join(str(q.get("question")).split()) == r["caption"])
        assert isinstance(src["answer"], (str, int, float)) and r["label"] == " ".join(str(src["answer"]).split())   # text or a number, never a repr
    roundtrip(recs, "qa")


@SETTINGS
@given(st.lists(st.lists(text | st.sampled_from(["msr7010", "video12", "key", "a1", "answer", "1", "5", ""]), min_size=0, max_size=9), max_size=6),
       st.sampled_from(["\t", ","]))
def test_mc_csv_converter_never_crashes(rows, sep):
    head = sep.join(["key", "vid_key", "a1", "a2", "a3", "a4", "a5", "answer"])
    body = "\n".join(sep.join(c.replace(sep, " ").replace("\n", " ").replace("\r", " ").replace('"', "") for c in r) for r in rows)
    p = tmpfile("MSR_MC_test.csv", (head + "\n" + body + "\n").encode())
    try: recs, rep = C.msrvtt_mc(p)
    except ValueError as e:
        assert str(p) in str(e), str(e)
        return
    for r in recs: assert r["clip_name"].startswith("video") and len(r["options"]) == 5 and 0 <= r["answer"] < 5
    if recs: roundtrip(recs, "mc")


@SETTINGS
@given(st.lists(st.dictionaries(st.sampled_from(["video", "description", "times", "annotation_id"]),
                                junk | st.lists(st.lists(st.integers(-2, 7), max_size=3), max_size=3), max_size=4), max_size=6))
def test_didemo_converter_never_crashes(items):
    p = tmpfile("train_data.json", json.dumps(items).encode())
    recs, rep = C.didemo(p)
    for r in recs:
        assert isinstance(r["clip_name"], str) and isinstance(r["caption"], str) and 0 <= r["start"] <= r["end"] <= 30
    if recs: roundtrip(recs, "retrieval")


@SETTINGS
@given(st.dictionaries(st.sampled_from(["videos", "sentences", "x"]),
                       st.lists(st.dictionaries(st.sampled_from(["video_id", "caption", "sen_id", "split"]), junk, max_size=4), max_size=5),
                       max_size=3))
def test_msrvtt_converter_never_crashes(data):
    p = tmpfile("MSRVTT_data.json", json.dumps(data).encode())
    try: recs, rep = C.msrvtt_retrieval(p, "official_train")
    except ValueError as e:
        assert str(p) in str(e), str(e)
        return
    for r in recs: assert isinstance(r["clip_name"], str) and isinstance(r["caption"], str)


def roundtrip(recs, kind):
    "What a converter writes loads back unchanged (captions without a word are dropped and counted, nothing else)."
    d = Path(tempfile.mkdtemp())
    try: C.write_jsonl(recs, d / "out.jsonl")
    except ValueError: return
    try: back = load_annotations(d / "out.jsonl", kind)
    except ValueError as e:
        assert str(e).startswith(f"{d / 'out.jsonl'}:"), str(e)
        return
    want = [r for r in recs if kind == "mc" or has_word(r["caption"])]
    assert [{k: v for k, v in b.items() if k != "_line"} for b in back] == want
