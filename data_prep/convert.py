#!/usr/bin/env python
"""Convert official dataset annotation files to snps3 annotation jsonl, and print what was kept and dropped (and why).

One subcommand per format (the functions live in `snps3.data.convert`, nbs/12_data.convert.ipynb):

  python data_prep/convert.py msrvtt --data MSRVTT_data.json --split 9k --train-list MSRVTT_train.9k.csv \
      --test-csv MSRVTT_JSFUSION_test.csv --out ann/msrvtt_train_9k.jsonl
  python data_prep/convert.py msrvtt --split jsfusion_test --test-csv MSRVTT_JSFUSION_test.csv --out ann/msrvtt_test_1ka.jsonl
  python data_prep/convert.py msrvtt-qa --qa train_qa.json --out ann/msrvtt_qa_train.jsonl
  python data_prep/convert.py msvd-qa --qa test_qa.json --mapping youtube_mapping.txt --out ann/msvd_qa_test.jsonl
  python data_prep/convert.py msvd --captions raw-captions.pkl --split-list test_list.txt --out ann/msvd_test.jsonl
  python data_prep/convert.py msrvtt-mc --mc msrvtt_mc_test.jsonl --out ann/msrvtt_mc_test.jsonl
  python data_prep/convert.py didemo --data test_data.json --out ann/didemo_test.jsonl
  python data_prep/convert.py webvid --csv results_2M_train.csv --media-root data/webvid --out ann/webvid_2m.jsonl
  python data_prep/convert.py cc3m --tsv Train_GCC-training.tsv --split train --media-root data --out ann/cc3m.jsonl
  python data_prep/convert.py coco --captions captions_train2017.json --image-dir train2017 --out ann/coco.jsonl
  python data_prep/convert.py vg --regions region_descriptions.json --media-root data/vg --out ann/vg.jsonl

`--media-root DIR` drops (and counts) records whose media file is missing under DIR; `--report FILE` also writes the
report as JSON. Exit status: 0 written, 1 an input error or nothing kept (the message names the file / record), 2 usage.
"""
import argparse, sys

from snps3.core import atomic_write_json
from snps3.data import convert as C


def _msrvtt(a): return C.msrvtt_retrieval(a.data, a.split, train_list=a.train_list, test_csv=a.test_csv)
def _didemo(a): return C.didemo(a.data, use_span=not a.whole_video, keep_ext=a.keep_ext)
def _cc3m(a): return C.cc3m(a.tsv, split=a.split, name_format=a.name_format, shard_size=a.shard_size)
def _vg(a): return C.visual_genome(a.regions, image_dirs=tuple(a.image_dirs), media_root=a.media_root)

# name: (help, [(flag, argparse kwargs)], call). Every subcommand also takes --out, --media-root, --report.
SUBCOMMANDS = {
    "msrvtt": ("MSRVTT retrieval captions of one split", [
        ("--data", dict(help="MSRVTT_data.json (not needed for jsfusion_test)")),
        ("--split", dict(required=True, choices=list(C.MSRVTT_SPLITS), help="7k | 9k: train lists; jsfusion_test: 1k-A; official_*: split field")),
        ("--train-list", dict(help="MSRVTT_train.7k.csv / MSRVTT_train.9k.csv (7k / 9k)")),
        ("--test-csv", dict(help="MSRVTT_JSFUSION_test.csv (jsfusion_test; with 7k / 9k: drop train videos of the 1k-A test)"))], _msrvtt),
    "msrvtt-qa": ("MSRVTT-QA train/val/test_qa.json → open QA", [("--qa", dict(required=True))], lambda a: C.msrvtt_qa(a.qa)),
    "msvd-qa": ("MSVD-QA train/val/test_qa.json → open QA", [
        ("--qa", dict(required=True)), ("--mapping", dict(required=True, help="youtube_mapping.txt"))], lambda a: C.msvd_qa(a.qa, a.mapping)),
    "msvd": ("MSVD captions (raw-captions.pkl, read without executing code) of one split list", [
        ("--captions", dict(required=True, help="raw-captions.pkl")),
        ("--split-list", dict(required=True, help="train_list.txt / val_list.txt / test_list.txt"))], lambda a: C.msvd_captions(a.captions, a.split_list)),
    "msrvtt-mc": ("MSRVTT multiple choice (msrvtt_mc_test.jsonl or MSR_MC_test.csv)", [
        ("--mc", dict(required=True)), ("--answer-base", dict(type=int, choices=(0, 1), help="MSR_MC_test.csv: answer counted from 0 or 1 (default: read from the data)"))],
        lambda a: C.msrvtt_mc(a.mc, answer_base=a.answer_base)),
    "didemo": ("DiDeMo LocalizingMoments json → one paragraph per video", [
        ("--data", dict(required=True, help="train_data.json / val_data.json / test_data.json")),
        ("--whole-video", dict(action="store_true", help="no start / end: sample the whole video (CLIP4Clip)")),
        ("--keep-ext", dict(action="store_true", help="keep the original extension in clip_name"))], _didemo),
    "webvid": ("WebVid results_*.csv → pretrain video items", [
        ("--csv", dict(required=True)), ("--name-format", dict(default="{page_dir}/{videoid}.mp4"))], lambda a: C.webvid(a.csv, name_format=a.name_format)),
    "cc3m": ("CC3M tsv (caption TAB url) → pretrain image items named by line number", [
        ("--tsv", dict(required=True)), ("--split", dict(default="train")),
        ("--name-format", dict(default="cc3m/{split}/{i:08d}.jpg", help="fields: i (0-based line), split, shard, idx")),
        ("--shard-size", dict(type=int, default=10000))], _cc3m),
    "coco": ("COCO captions_*.json → pretrain image items", [
        ("--captions", dict(required=True)), ("--image-dir", dict(default="train2017"))], lambda a: C.coco_captions(a.captions, image_dir=a.image_dir)),
    "vg": ("Visual Genome region_descriptions.json → pretrain image items (one per region)", [
        ("--regions", dict(required=True)), ("--image-dirs", dict(nargs="+", default=["VG_100K", "VG_100K_2"]))], _vg),
}


def parser() -> argparse.ArgumentParser:
    "The argument parser: one subcommand per format."
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="format", required=True)
    for name, (help_, args, _) in SUBCOMMANDS.items():
        s = sub.add_parser(name, help=help_, description=help_)
        for flag, kw in args: s.add_argument(flag, **kw)
        s.add_argument("--out", required=True, help="output .jsonl")
        s.add_argument("--media-root", help="drop records whose media file is missing under this folder")
        s.add_argument("--report", help="also write the report as JSON here")
    return p


def main(argv=None) -> int:
    "Convert, print the report, write the jsonl (and the report); return the exit status."
    a = parser().parse_args(argv)
    try:
        records, report = SUBCOMMANDS[a.format][2](a)
        if a.media_root and a.format != "vg": records, report = C.drop_missing_media(records, a.media_root, report)
        print(C.format_report(report))
        if a.report: atomic_write_json(a.report, report)
        C.write_jsonl(records, a.out)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(records)} records to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
