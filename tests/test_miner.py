"""The word miner end to end: a jsonl corpus on disk -> `data_prep/mine_words.py` -> ranking csv + same-lemma json."""
import csv, json, os, subprocess, sys
from pathlib import Path

import pytest

from snps3.miner import CSV_COLUMNS, load_lemma_variants, load_significant, mine_words_main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
COLOURS, SHAPES = ["red", "green", "blue", "yellow"], ["circle", "square", "triangle", "star"]
ACTIONS = ["moves left", "is moving up", "spins", "is spinning", "falls", "grows"]
FILLER = ["in this short clip we can see that {}", "the video shows {}", "there is {}", "we can see {}", "{}"]
ATTRIBUTES = set(COLOURS + SHAPES) | {"small", "large", "moves", "moving", "spins", "spinning", "falls", "grows", "left", "up"}


def _corpus(n=120):
    "Deterministic captions: attribute words wrapped in filler templates."
    caps = []
    for i in range(n):
        obj = f"a {['small', 'large'][i % 2]} {COLOURS[i % 4]} {SHAPES[(i // 4) % 4]} {ACTIONS[(i // 3) % 6]}"
        caps.append(FILLER[i % 5].format(obj))
    return caps


def _write_ann(path, captions):
    path.write_text("".join(json.dumps({"clip_name": f"v{i}", "caption": c, "type": "video"}) + "\n" for i, c in enumerate(captions)),
                    encoding="utf-8")
    return path


def test_script_ranks_attributes_above_filler(tmp_path):
    ann = _write_ann(tmp_path / "pretrain.jsonl", _corpus())
    out = tmp_path / "words"
    r = subprocess.run([sys.executable, str(ROOT / "data_prep" / "mine_words.py"), "--ann", str(ann), "--out", str(out), "--top-k", "10"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "significant at top-k 10" in r.stdout
    with open(out / "word_ranking.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    rank = {r["name"]: int(r["rank"]) for r in rows}
    ranked = sorted((w for w in rank if rank[w] > 0), key=rank.get)
    assert set(ranked[:10]) <= ATTRIBUTES, ranked[:10]
    worst_attribute = max(rank[w] for w in COLOURS + SHAPES)
    for filler in ("video", "clip", "shows", "see", "can", "there", "is", "the", "a", "in", "this", "we", "that"):
        assert rank.get(filler, 0) == 0 or rank[filler] > worst_attribute, filler
    for r in rows:  # percentages are shares of the word's own total
        pct = sum(float(r[f"{p}_percentage"]) for p in ("verb", "noun", "adj"))
        assert 0 <= pct <= 1 + 1e-6
    info = json.loads((out / "mine_info.json").read_text())
    assert info["captions"] == 120 and info["pos_threshold"] == 0.25

    from snps3.data.text import load_tokenizer
    tok = load_tokenizer("minilm")
    sig = load_significant(out / "word_ranking.csv", len(tok), 10, tokenizer=tok)
    assert sig.sum().item() == 10
    variants = load_lemma_variants(out / "lemma_variants.json")
    moves, moving = tok.convert_tokens_to_ids(["moves", "moving"])
    assert moving in variants[moves] and moves in variants[moving]


@pytest.mark.parametrize("bad,expect", [(b'{"caption": "a red circle"}\n{"caption": "a \xff circle"}\n', "ann.jsonl:2: not valid UTF-8"),
                                        (b'{"caption": "a red circle"}\n\n{"caption": "a\n', "ann.jsonl:3: malformed JSON"),
                                        (b'{"caption": "a red circle"}\n{"clip_name": "v"}\n', "ann.jsonl:2: no string 'caption'")])
def test_broken_annotations_name_file_and_line(tmp_path, capsys, bad, expect):
    ann = tmp_path / "ann.jsonl"
    ann.write_bytes(bad)
    assert mine_words_main(["--ann", str(ann), "--out", str(tmp_path / "w")]) == 2
    assert expect in capsys.readouterr().err
    assert not (tmp_path / "w" / "word_ranking.csv").exists()
