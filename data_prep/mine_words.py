#!/usr/bin/env python
"""Rank the significant words of annotation captions (spaCy VERB/NOUN/ADJ counts) and list same-lemma variants.

  python data_prep/mine_words.py --ann data/synthetic/pretrain.jsonl --out data/synthetic/words [--top-k 800]

Writes word_ranking.csv (the reference's columns: id, name, total_count, verb_count, noun_count, adj_count, rank,
verb_percentage, noun_percentage, adj_percentage; rank 0 = not significant), lemma_variants.json (token id -> ids of
other words with the same lemma) and mine_info.json. Point `data.words_file` / `data.lemma_file` at the first two.
The same as `snps3 mine-words ...`; the code lives in snps3.miner (nbs/03a_miner.ipynb).
"""
import sys

from snps3.miner import mine_words_main

if __name__ == "__main__":
    sys.exit(mine_words_main(prog="python data_prep/mine_words.py"))
