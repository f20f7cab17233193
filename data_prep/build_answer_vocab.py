#!/usr/bin/env python
"""Build the open-QA answer vocabulary: the top-N most frequent TRAIN answers (ties broken alphabetically).

  python data_prep/build_answer_vocab.py --train ann/msrvtt_qa_train.jsonl --top-n 1500 --out ann/msrvtt_qa_answers.json \
      --eval ann/msrvtt_qa_val.jsonl ann/msrvtt_qa_test.jsonl

Writes a JSON list of answers (most frequent first) and prints the train OOV share (those questions cannot be learned)
and, for every --eval file, the share of questions whose answer is outside the vocabulary (they count as wrong at
evaluation, so accuracy is bounded by 1 - that share). Input files are open-QA jsonl (`data_prep/convert.py msrvtt-qa`).
"""
import argparse, json, sys

from snps3.core import atomic_write_json
from snps3.data.convert import answer_oov, build_answer_vocab
from snps3.data.datasets import load_annotations


def main(argv=None) -> int:
    "Build, print and write the vocabulary; return the exit status."
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--train", required=True, help="open-QA jsonl of the train split")
    p.add_argument("--top-n", type=int, required=True, help="vocabulary size (MSRVTT-QA: 1500, MSVD-QA: 1000 are usual)")
    p.add_argument("--out", required=True, help="output JSON list of answers")
    p.add_argument("--eval", nargs="*", default=[], help="open-QA jsonl files to report the OOV share of")
    p.add_argument("--report", help="also write the report as JSON here")
    a = p.parse_args(argv)
    try:
        answers, report = build_answer_vocab(load_annotations(a.train, "qa"), a.top_n)
        report["eval"] = {path: answer_oov(load_annotations(path, "qa"), answers) for path in a.eval}
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{report['answers']} answers (of {report['distinct_train_answers']} distinct) from {report['train_questions']} train questions; "
          f"least frequent kept: {report['min_count_in_vocab']}{' (tie at the cut, broken alphabetically)' if report['tie_at_cutoff'] else ''}")
    print(f"  train OOV: {report['train_oov']} questions ({report['train_oov_share']:.2%}): not learnable")
    for path, r in report["eval"].items():
        print(f"  {path}: OOV {r['oov']} of {r['questions']} ({r['oov_share']:.2%}): counted as wrong")
    atomic_write_json(a.out, answers, indent=0)
    if a.report: atomic_write_json(a.report, report)
    print(f"wrote {len(answers)} answers to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
