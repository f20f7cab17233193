"""Where the cross head loses to the dual score on the embedded benchmark: three measurements of one checkpoint.

    python data_prep/cross_diagnostics.py runs/finetune_retrieval [--data data/synthetic] [--split test] [--max-clips 60]

1. Does the cross pass read the video? Every colour / shape word of the split's captions is masked in turn and predicted by
   the MLM head from the cross pass with the caption's own clip, with another clip, and from the text-only pass.
   A cross pass that reads the video beats the text-only pass on colour words (chance: 1 in 8 colours).
2. Exact text->video R@1 of the dual score and of the cross score (every caption against every clip), split by the
   number of objects in the caption's clip, what the wrong top-1 clip changes (attributes of scenes.jsonl), and how
   many distinct clips the wrong picks fall on (a score that favours a few clips for any caption concentrates them),
   with the captions the most-picked clip takes.
3. The ceiling without motion: R@1 of an oracle that knows every attribute of every clip except the action, ties
   broken at random (the expected R@1 is the mean of 1 / tied clips).
4. What the matching head trains on: the share of hard negatives (drawn as training draws them, ∝ softmax(dual sim /
   loss.negative_temperature) among the other clips of a random batch of --batch-size) whose number of objects differs
   from the positive's, against a uniform draw. This checkpoint's dual score stands in for the one of training time.
The split's gallery is the first --max-clips clips, as `snps3 eval` uses them (eval.max_clips)."""
import argparse, collections, json, os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch

from snps3.data.synthetic import ATTRIBUTES

ATTRS = tuple(ATTRIBUTES)   # shape, colour, size, action: the benchmark's own list


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a run directory or checkpoint (pre-training or retrieval fine-tuning)")
    ap.add_argument("--data", type=Path, default=Path("data/synthetic"), help="the embedded benchmark's root (with scenes.jsonl)")
    ap.add_argument("--split", default="test", help="retrieval_<split>.jsonl (default test)")
    ap.add_argument("--max-clips", type=int, default=60, help="gallery size: the first N clips of the split (default 60, as eval)")
    ap.add_argument("--batch-size", type=int, default=16, help="batch size of the negative draws of part 4 (default 16, the demo's)")
    return ap.parse_args(argv)


def scene_change(a: dict, b: dict) -> str:
    """What scene b changes relative to scene a: 'count 1->2' (object counts; ' nested' when one scene's objects are all in
    the other's), the changed attributes joined by '+', or 'same'."""
    A, B = a["objects"], b["objects"]
    if len(A) != len(B):
        key = lambda objs: {tuple(o[k] for k in ATTRS) for o in objs}
        return f"count {len(A)}->{len(B)}" + (" nested" if key(A) <= key(B) or key(B) <= key(A) else "")
    return "+".join(k for k in ATTRS if any(p[k] != q[k] for p, q in zip(A, B))) or "same"


def blind_oracle_r1(caption_clips: list[str], gallery: list[str], scenes: dict, blind: tuple = ("action",)) -> float:
    "Expected R@1 (%) of an oracle that sees every attribute but `blind`, ties broken at random."
    key = lambda c: tuple(sorted(tuple(o[k] for k in ATTRS if k not in blind) for o in scenes[c]["objects"]))
    return 100 * sum(1 / sum(key(g) == key(c) for g in gallery) for c in caption_clips) / len(caption_clips)


@torch.no_grad()
def word_prediction(model, tok, captions: list[str], clip_of: list[int], tokens, mask, vocab: dict) -> dict:
    "{category: (n, cross with own clip, cross with another clip, text-only)} accuracies (%) of masked-word prediction."
    res = {c: [0, 0, 0, 0] for c in vocab}
    for i, cap in enumerate(captions):
        enc = tok(cap, return_tensors="pt"); ids, att = enc["input_ids"], enc["attention_mask"]
        own, other = clip_of[i], (clip_of[i] + len(tokens) // 2) % len(tokens)
        for p, word in enumerate(tok.convert_ids_to_tokens(ids[0])):
            cat = next((c for c, words in vocab.items() if word in words), None)
            if cat is None: continue
            masked = ids.clone(); masked[0, p] = tok.mask_token_id
            labels = torch.full_like(ids, -100); labels[0, p] = ids[0, p]
            hits = []
            for v in (own, other):
                cr = model.cross(masked, att, tokens[v:v + 1], mask[v:v + 1])
                lg, _ = model.mlm_logits(cr.hidden[:, :ids.shape[1]], labels); hits.append(int(lg.argmax(-1)[0] == ids[0, p]))
            lg, _ = model.mlm_logits(model.encode_text(masked, att).hidden, labels)
            r = res[cat]; r[0] += 1; r[1] += hits[0]; r[2] += hits[1]; r[3] += int(lg.argmax(-1)[0] == ids[0, p])
    return {c: (n, *(100 * x / max(n, 1) for x in xs)) for c, (n, *xs) in res.items()}


def wrong_picks(top: list[int], # top-1 clip of each caption
                first: list[int] # its ground-truth clip
               ) -> collections.Counter:
    "Clip -> how many captions have it as their wrong top-1."
    return collections.Counter(t for t, f in zip(top, first) if t != f)


def wrong_pick_spread(top: list[int], # top-1 clip of each caption
                      first: list[int] # its ground-truth clip
                     ) -> tuple[int, int, int]:
    "(wrong top-1 picks, distinct clips among them, picks of the most-picked clip): do a few clips take many captions?"
    wrong = wrong_picks(top, first)
    return sum(wrong.values()), len(wrong), max(wrong.values(), default=0)


def describe(scene: dict) -> str:
    "The objects of a scenes.jsonl record: 'small green hexagon left; ...'."
    return "; ".join(f"{o['size']} {o['colour']} {o['shape']} {o['action']}" for o in scene["objects"])


def count_shift_shares(sim: torch.Tensor, # [Nt,Nv] dual similarities
                       first: list[int], # each caption's own clip
                       counts: torch.Tensor, # [Nv] objects per clip
                       tau: float, batch_size: int, draws: int, seed: int = 0) -> tuple[float, float]:
    "Expected share (%) of hard negatives whose object count differs from the positive's: dual-drawn, and uniform."
    g, drawn, uniform, n = torch.Generator().manual_seed(seed), 0.0, 0.0, 0
    for i, f in enumerate(first):
        for _ in range(draws):
            perm = torch.randperm(sim.shape[1], generator=g)
            others = perm[perm != f][:batch_size - 1]                                   # the batch's other clips
            differs = (counts[others] != counts[f]).float()
            drawn += float(torch.softmax(sim[i, others] / tau, 0) @ differs); uniform += differs.mean().item(); n += 1
    return 100 * drawn / n, 100 * uniform / n


def main(argv=None):
    args = parse_args(argv)
    from snps3.data.datasets import retrieval_pairs
    from snps3.data.synthetic import COLOURS, SHAPES
    from snps3.data.text import load_tokenizer
    from snps3.downstream import _eval_records, cross_pair_scores, encode_gallery, encode_queries, load_for_eval
    torch.set_grad_enabled(False)
    model, cfg, _ = load_for_eval(args.checkpoint)
    cfg = replace(cfg, task="retrieval", data=replace(cfg.data, root=str(args.data)), eval=replace(cfg.eval, split=args.split, max_clips=args.max_clips))
    recs, _ = _eval_records(cfg, "retrieval")
    clips, caps, gt = retrieval_pairs(recs)
    scenes_path = args.data / "scenes.jsonl"
    if not scenes_path.is_file(): raise SystemExit(f"{scenes_path} not found: --data must be the embedded benchmark (make_synthetic)")
    scenes = {s["clip_name"]: s for s in map(json.loads, scenes_path.read_text().splitlines())}
    missing = [c for c in clips if c not in scenes]
    if missing: raise SystemExit(f"{len(missing)} clips of retrieval_{args.split}.jsonl are not in {scenes_path} (first: {missing[0]})")
    dev, tok = torch.device("cpu"), load_tokenizer(cfg.model.text_model)
    gallery = encode_gallery(model, clips, cfg, dev)
    queries = encode_queries(model, tok, caps, cfg.data.max_text_len, dev)
    first = [g[0] for g in gt]
    print(f"{args.checkpoint}: retrieval_{args.split}, {len(caps)} captions, {len(clips)} clips")

    print("\n1. masked-word prediction (%): cross pass with its own clip / with another clip / text-only pass")
    vocab = {"colour": set(COLOURS), "shape": set(SHAPES)}
    chance = {"colour": 100 / len(COLOURS), "shape": 100 / len(SHAPES)}
    for c, (n, own, other, text) in word_prediction(model, tok, caps, first, gallery.tokens, gallery.mask, vocab).items():
        print(f"   {c:7s} n={n:4d}  {own:5.1f} / {other:5.1f} / {text:5.1f}   (chance {chance[c]:.1f})")

    print("\n2. exact t2v R@1 (every caption x every clip)")
    sim = queries["emb"] @ gallery.emb.T                                                   # [Nt,Nv]
    pairs = torch.cartesian_prod(torch.arange(len(caps)), torch.arange(len(clips)))        # [Nt*Nv,2]
    cross = cross_pair_scores(model, queries, gallery, pairs, dev).view(len(caps), len(clips))
    n_obj = [len(scenes[clips[g]]["objects"]) for g in first]
    for name, M in (("dual", sim), ("cross", cross)):
        top = M.argmax(1).tolist()
        by_n = {k: [top[i] == first[i] for i in range(len(caps)) if n_obj[i] == k] for k in sorted(set(n_obj))}
        errs = collections.Counter(scene_change(scenes[clips[first[i]]], scenes[clips[top[i]]]) for i in range(len(caps)) if top[i] != first[i])
        print(f"   {name:5s} R@1 {100 * sum(t == f for t, f in zip(top, first)) / len(caps):5.1f}  "
              + "  ".join(f"{k}-object {100 * sum(v) / len(v):5.1f} (n={len(v)})" for k, v in by_n.items()))
        print(f"         wrong top-1 changes: {dict(errs.most_common())}")
        n, distinct, most = wrong_pick_spread(top, first)
        print(f"         {n} wrong top-1 picks fall on {distinct} distinct clips; the most-picked takes {most}")
        if most:                                                                           # which captions it takes, and by how much
            hub = wrong_picks(top, first).most_common(1)[0][0]
            print(f"         the most-picked clip [{describe(scenes[clips[hub]])}] takes (score there / with the own clip):")
            for i in (i for i in range(len(caps)) if top[i] == hub and first[i] != hub):
                print(f"           {caps[i]!r} [{describe(scenes[clips[first[i]]])}]  {M[i, hub]:.2f} / {M[i, first[i]]:.2f}")

    print("\n3. oracle R@1 blind to ... (ties at random)")
    for blind in ((), ("action",), ("colour",), ("shape",)):
        print(f"   {'+'.join(blind) or 'nothing':8s} {blind_oracle_r1([clips[f] for f in first], clips, scenes, blind):5.1f}")

    tau = cfg.loss.negative_temperature
    print(f"\n4. hard negatives with another number of objects (%), drawn ∝ softmax(dual sim / {tau}) in batches of {args.batch_size}")
    counts = torch.tensor([len(scenes[c]["objects"]) for c in clips])
    drawn, uniform = count_shift_shares(sim, first, counts, tau, args.batch_size, draws=50)
    print(f"   dual-drawn {drawn:5.1f}   uniform {uniform:5.1f}")


if __name__ == "__main__":
    main()
