"""Does a checkpoint's matching head rank clips by their background? Re-render every test clip of the embedded benchmark
with another test clip's background (photo and crop; objects, motion and length unchanged) and score each caption against
its clip on the foreign background.

    python data_prep/background_swap.py runs/finetune_retrieval [--data data/synthetic] [--out /tmp/bgswap] [--seed 0]

Printed, per head (cross = the matching head, dual = the embeddings' cosine):
- the mean of (score with the own clip - score with the own clip on a foreign background) over the captions, in units of
  the std of that head's scores over the caption's dual top-16 (eval.rerank_k) candidates. Near 0: the head does not use
  the background to recognise the clip; of the order of 1: it does.
- text->video R@1 with the original gallery, and with every caption's own clip replaced by its re-rendered version
  (the rest of the gallery unchanged; the cross head reranks the same dual top-16 plus the replaced own clip).
The re-rendered clips are written under --out/bgswap/ (not into the data root), afresh on every run."""
import argparse, json, os, random
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a run directory or checkpoint (pre-training or retrieval fine-tuning)")
    ap.add_argument("--data", type=Path, default=Path("data/synthetic"), help="the embedded benchmark's root (with scenes.jsonl)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/snps3_background_swap"), help="where the re-rendered clips go")
    ap.add_argument("--seed", type=int, default=0, help="seed of the background assignment")
    ap.add_argument("--rerank-k", type=int, default=16, help="candidates per caption (default 16, as eval.rerank_k)")
    return ap.parse_args(argv)


def foreign_backgrounds(photos: list[str], seed: int = 0, tries: int = 10_000) -> list[int]:
    "A permutation p of range(n) with photos[p[i]] != photos[i] for every i (each clip gets another clip's background)."
    n, rng = len(photos), random.Random(seed)
    if n and max(photos.count(p) for p in set(photos)) > n / 2:
        raise ValueError(f"more than half of the {n} clips share one photo: no assignment gives every clip a foreign background")
    perm = list(range(n))
    for _ in range(tries):
        if all(photos[perm[i]] != photos[i] for i in range(n)): return perm
        rng.shuffle(perm)
    raise ValueError(f"no foreign-background assignment found in {tries} shuffles")


def background_reliance(own: torch.Tensor, # [n] each caption's score with its own clip
                        swapped: torch.Tensor, # [n] the same with its own clip on a foreign background
                        spread: torch.Tensor # [n] std of the head's scores over the caption's candidates
                       ) -> float:
    "Mean drop of the own clip's score when its background changes, in units of each caption's candidate spread."
    return float(((own - swapped) / spread.clamp_min(1e-9)).mean())


def r1_with_replaced_own(scores: torch.Tensor, # [n,V] a head's scores (unscored entries below every scored one)
                         own: torch.Tensor, # LongTensor [n] own clip column
                         replaced: torch.Tensor # [n] the score of the own clip's re-rendered version
                        ) -> float:
    "R@1 (%) when each caption's own clip is swapped for its re-rendered version and the rest of the gallery is unchanged."
    s = scores.clone(); s[torch.arange(len(own)), own] = replaced
    return 100 * float((s.argmax(1) == own).float().mean())


@torch.no_grad()
def main(argv=None):
    from snps3.data.datasets import retrieval_pairs
    from snps3.data.synthetic import Scene, SceneObject, _write_clip, load_photos
    from snps3.data.text import load_tokenizer
    from snps3.downstream import _eval_records, cross_pair_scores, encode_gallery, encode_queries, load_for_eval, reranked, topk_pairs
    a = parse_args(argv)
    path = a.data / "scenes.jsonl"
    if not path.is_file(): raise SystemExit(f"{path}: no scenes.jsonl (make it with data_prep/make_synthetic.py)")
    model, cfg, _ = load_for_eval(a.checkpoint)
    cfg = replace(cfg, task="retrieval", data=replace(cfg.data, root=str(a.data)), eval=replace(cfg.eval, split="test"))
    recs, _ = _eval_records(cfg, "retrieval"); clips, caps, gt = retrieval_pairs(recs)
    rows = {s["clip_name"]: s for s in map(json.loads, path.open())}
    missing = [c for c in clips if c not in rows]
    if missing: raise SystemExit(f"{path}: no scene for {len(missing)} test clips (first: {missing[0]}); regenerate the benchmark")
    perm, photos = foreign_backgrounds([rows[c]["photo"] for c in clips], a.seed), load_photos()
    swapped = []
    for i, c in enumerate(clips):
        r, bg = rows[c], rows[clips[perm[i]]]
        name = f"bgswap/{Path(c).stem}_on_{Path(clips[perm[i]]).stem}.mp4"            # rendered afresh: never a stale file
        scene = Scene(objects=tuple(SceneObject(**o) for o in r["objects"]), photo=bg["photo"], crop=tuple(bg["crop"]), num_frames=r["num_frames"])
        _write_clip(a.out / name, scene, photos)
        swapped.append(name)
    dev, tok = torch.device("cpu"), load_tokenizer(cfg.model.text_model)
    g0 = encode_gallery(model, clips, cfg, dev)
    g1 = encode_gallery(model, swapped, replace(cfg, data=replace(cfg.data, root=str(a.out))), dev)
    q = encode_queries(model, tok, caps, cfg.data.max_text_len, dev)
    own = torch.tensor([g[0] for g in gt]); n = len(caps)
    own_pairs = torch.stack([torch.arange(n), own], 1)                                 # [n,2]
    sim = q["emb"] @ g0.emb.T                                                           # [n,V]
    k = min(a.rerank_k, sim.shape[1]); pairs = topk_pairs(sim, k, 1)                    # [n*k,2] each caption's dual top k
    top = pairs[:, 1].view(n, k)                                                        # [n,k]
    cross = reranked(sim, pairs, cross_pair_scores(model, q, g0, pairs, dev))           # [n,V] as `snps3 eval` reranks
    c_own, c_sw = cross_pair_scores(model, q, g0, own_pairs, dev), cross_pair_scores(model, q, g1, own_pairs, dev)
    d_own, d_sw = (q["emb"] * g0.emb[own]).sum(1), (q["emb"] * g1.emb[own]).sum(1)
    print(f"{a.checkpoint}: {n} captions, {len(clips)} clips; own clip re-rendered on another test clip's background (seed {a.seed})")
    print(f"  score drop in units of the caption's top-{k} spread: cross {background_reliance(c_own, c_sw, cross.gather(1, top).std(1)):.2f}, "
          f"dual {background_reliance(d_own, d_sw, sim.gather(1, top).std(1)):.2f}")
    print(f"  R@1 original gallery: dual {100 * float((sim.argmax(1) == own).float().mean()):.1f}, cross {100 * float((cross.argmax(1) == own).float().mean()):.1f}")
    print(f"  R@1 own clip on a foreign background: dual {r1_with_replaced_own(sim, own, d_sw):.1f}, cross {r1_with_replaced_own(cross, own, c_sw):.1f}")


if __name__ == "__main__":
    main()
