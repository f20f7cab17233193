"""How often a caption's micro-batch holds a clip that differs from its own in exactly one attribute (the hard-negative pairs
of `snps3 eval`'s pairs/* metrics), for batches drawn uniformly from a split of the embedded benchmark's scenes.jsonl.

    python data_prep/negative_partners.py data/synthetic --split pretrain --batch-size 16 --draws 2000 --seed 0

Batches are drawn from every scene of the split; anchors and partners are the single-object scenes (the pairs/* metrics'
partners are single-object clips too)."""
import argparse, json, random
from pathlib import Path

ATTRS = ("shape", "colour", "size", "action")

def differs_only_in(a: dict, b: dict) -> str | None:
    "The one attribute in which two single-object scenes differ, or None (several differ, or either is not single-object)."
    if len(a["objects"]) != 1 or len(b["objects"]) != 1: return None
    diff = [k for k in ATTRS if a["objects"][0][k] != b["objects"][0][k]]
    return diff[0] if len(diff) == 1 else None

def partner_shares(scenes: list[dict], batch_size: int, draws: int, seed: int) -> dict:
    "{attribute: share of (single-object caption, batch) draws whose batch holds a partner differing in that attribute alone}."
    rng, hits, n = random.Random(seed), {k: 0 for k in ATTRS}, 0
    for _ in range(draws):
        batch = rng.sample(scenes, batch_size)
        for i, s in enumerate(batch):
            if len(s["objects"]) != 1: continue
            found = {differs_only_in(s, t) for j, t in enumerate(batch) if j != i}
            n += 1
            for k in ATTRS: hits[k] += k in found
    return {k: hits[k] / n for k in ATTRS}

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="benchmark folder with scenes.jsonl (make_synthetic.py --out)")
    ap.add_argument("--split", default="pretrain")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    scenes = [json.loads(l) for l in (a.root / "scenes.jsonl").read_text().splitlines() if l.strip()]
    scenes = [s for s in scenes if s.get("split") == a.split]
    single = [s for s in scenes if len(s["objects"]) == 1]
    print(f"{a.root / 'scenes.jsonl'} split {a.split}: {len(scenes)} scenes, {len(single)} single-object; "
          + ", ".join(f"{k} {len({s['objects'][0][k] for s in single})}" for k in ATTRS))
    if len(scenes) < a.batch_size or not single: raise SystemExit(f"error: split {a.split} has {len(scenes)} scenes ({len(single)} single-object); need {a.batch_size}")
    shares = partner_shares(scenes, a.batch_size, a.draws, a.seed)
    print(f"batches of {a.batch_size} ({a.draws} draws, seed {a.seed}): a caption's batch holds a partner differing only in " +
          ", ".join(f"{k} {100 * v:.1f} %" for k, v in shares.items()))

if __name__ == "__main__": main()
