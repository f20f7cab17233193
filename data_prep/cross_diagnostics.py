"""Where the cross head loses to the dual score on the embedded benchmark: five measurements of one checkpoint.

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
5. Which candidates the cross head loses on: each caption's own clip against the dual's top --rerank-k other clips (the
   candidates the evaluation reranks), the share of those pairs each head orders right, by the negative's dual rank
   (1-2, 3-4, 5-8, 9-16) and by what it changes, and R@1 among the own clip and those negatives. Run it on --split train
   too (--max-clips 0 --captions 300): a head that trails there as well underfits the ranking, it does not overfit.
6. The matching head against the dual score over each caption's dual top --rerank-k clips (the reranked candidates):
   the spread (std) of the head's logits and of the dual logits sim/τ, t2v R@1 of the dual score, of the head alone and
   of the model's cross score (head + model.cross_residual × cosine), of dual/τ + α × head for a grid of α (is the head
   informative at another scale?), and what the wrong top-1 clip changes under the dual and under the cross score.
The split's gallery is the first --max-clips clips, as `snps3 eval` uses them (eval.max_clips; 0: all). --parts picks
the measurements (part 2 scores every caption with every clip: keep it to the test split).

    python data_prep/cross_diagnostics.py runs/finetune_retrieval --split train --max-clips 0 --captions 300 --parts 5"""
import argparse, collections, json, math, os
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
    ap.add_argument("--rerank-k", type=int, default=16, help="negatives per caption in part 5 (default 16, as eval.rerank_k)")
    ap.add_argument("--captions", type=int, default=0, help="part 5: a random sample of this many captions (seed 0; default 0: all)")
    ap.add_argument("--parts", default="1,2,3,4,5,6", help="comma-separated parts to run (default all)")
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


RANK_BUCKETS = ((1, 2), (3, 4), (5, 8), (9, 16))


def wins_by_bucket(own: torch.Tensor, # [Nt] a head's score of each caption with its own clip
                   neg: torch.Tensor, # [Nt,K] its scores of the caption's K negatives, in the dual's rank order (column r-1 = rank r)
                   buckets=RANK_BUCKETS) -> dict:
    "Share (%) of (caption, negative) pairs with the own clip strictly above the negative, per bucket of dual ranks (1-based, inclusive)."
    win = own[:, None] > neg                                                               # [Nt,K]
    out = {}
    for lo, hi in buckets:
        if lo <= neg.shape[1]: out[(lo, hi)] = 100 * win[:, lo - 1:hi].float().mean().item()
    return out


def wins_by_change(own: torch.Tensor, neg: torch.Tensor, # [Nt], [Nt,K] as in `wins_by_bucket`
                   changes: list[list[str]] # [Nt][K] what each negative changes (`scene_change` of the own clip's scene)
                  ) -> dict:
    "{change: (pairs, share (%) ordered right)} over all (caption, negative) pairs."
    acc = collections.defaultdict(lambda: [0, 0])
    for i, row in enumerate(changes):
        for r, c in enumerate(row): acc[c][0] += 1; acc[c][1] += int(own[i] > neg[i, r])
    return {c: (n, 100 * w / n) for c, (n, w) in acc.items()}


def change_kind(change: str) -> str:
    "Group `scene_change` labels: 'count' for another number of objects, '<attr>' for one attribute, 'N attributes' for several."
    if change.startswith("count"): return "count"
    return change if "+" not in change else f"{change.count('+') + 1} attributes"


def rerank_candidates(sim: torch.Tensor, # [Nt,Nv] dual similarities
                      own: list[int], # the own clip of each caption
                      k: int) -> torch.Tensor:
    "LongTensor [Nt,k]: each caption's top-k clips by the dual score, its own clip left out, in rank order."
    masked = sim.clone(); masked[torch.arange(len(own)), torch.tensor(own)] = -math.inf
    return masked.topk(min(k, sim.shape[1] - 1), 1).indices


def main(argv=None):
    args = parse_args(argv)
    from snps3.data.datasets import retrieval_pairs
    from snps3.data.text import load_tokenizer
    from snps3.downstream import _eval_records, encode_gallery, encode_queries, load_for_eval
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

    parts = {int(p) for p in args.parts.split(",") if p.strip()}
    sim = queries["emb"] @ gallery.emb.T                                                   # [Nt,Nv]
    if 1 in parts: part_words(model, tok, caps, first, gallery)
    if 2 in parts: part_exact(model, queries, gallery, caps, clips, first, scenes, sim, dev)
    if 3 in parts: part_oracle(clips, first, scenes)
    if 4 in parts: part_draws(sim, clips, first, scenes, cfg, args)
    if 5 in parts: part_rerank(model, queries, gallery, caps, clips, first, gt, scenes, sim, dev, args)
    if 6 in parts: part_fusion(model, queries, gallery, clips, first, gt, scenes, sim, dev, cfg, args)


def part_words(model, tok, caps, first, gallery):
    from snps3.data.synthetic import COLOURS, SHAPES
    print("\n1. masked-word prediction (%): cross pass with its own clip / with another clip / text-only pass")
    vocab = {"colour": set(COLOURS), "shape": set(SHAPES)}
    chance = {"colour": 100 / len(COLOURS), "shape": 100 / len(SHAPES)}
    for c, (n, own, other, text) in word_prediction(model, tok, caps, first, gallery.tokens, gallery.mask, vocab).items():
        print(f"   {c:7s} n={n:4d}  {own:5.1f} / {other:5.1f} / {text:5.1f}   (chance {chance[c]:.1f})")


def part_exact(model, queries, gallery, caps, clips, first, scenes, sim, dev):
    from snps3.downstream import cross_pair_scores
    print("\n2. exact t2v R@1 (every caption x every clip)")
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


def part_oracle(clips, first, scenes):
    print("\n3. oracle R@1 blind to ... (ties at random)")
    for blind in ((), ("action",), ("colour",), ("shape",)):
        print(f"   {'+'.join(blind) or 'nothing':8s} {blind_oracle_r1([clips[f] for f in first], clips, scenes, blind):5.1f}")


def part_draws(sim, clips, first, scenes, cfg, args):
    tau = cfg.loss.negative_temperature
    print(f"\n4. hard negatives with another number of objects (%), drawn ∝ softmax(dual sim / {tau}) in batches of {args.batch_size}")
    counts = torch.tensor([len(scenes[c]["objects"]) for c in clips])
    drawn, uniform = count_shift_shares(sim, first, counts, tau, args.batch_size, draws=50)
    print(f"   dual-drawn {drawn:5.1f}   uniform {uniform:5.1f}")


def part_rerank(model, queries, gallery, caps, clips, first, gt, scenes, sim, dev, args):
    from snps3.downstream import cross_pair_scores
    rows = list(range(len(caps)))
    if args.captions and args.captions < len(caps):
        rows = sorted(torch.randperm(len(caps), generator=torch.Generator().manual_seed(0))[:args.captions].tolist())
    own = [first[i] for i in rows]
    s = sim[rows]                                                                          # [n,Nv]
    for j, i in enumerate(rows): s[j, [g for g in gt[i] if g != first[i]]] = -math.inf   # other clips of the same caption are no negatives
    cand = rerank_candidates(s, own, args.rerank_k)                                        # [n,K]
    K = cand.shape[1]
    pairs = torch.cat([torch.stack([torch.tensor(rows), torch.tensor(own)], 1),
                       torch.stack([torch.tensor(rows).repeat_interleave(K), cand.flatten()], 1)])   # [n + n*K,2]
    cr = cross_pair_scores(model, queries, gallery, pairs, dev)
    heads = {"dual": (sim[rows, own], sim[torch.tensor(rows)[:, None], cand]), "cross": (cr[:len(rows)], cr[len(rows):].view(len(rows), K))}
    changes = [[change_kind(scene_change(scenes[clips[o]], scenes[clips[c]])) for c in cand[j].tolist()] for j, o in enumerate(own)]
    print(f"\n5. own clip vs the dual's top {K} other clips, {len(rows)} captions: pairs ordered right (%), by the negative's dual rank")
    for name, (o, n) in heads.items():
        r1 = 100 * (o[:, None] > n).all(1).float().mean().item()
        print(f"   {name:5s} R@1 among the {K + 1}: {r1:5.1f}   " + "  ".join(f"rank {lo}-{hi} {w:5.1f}" for (lo, hi), w in wins_by_bucket(o, n).items()))
    print("   by what the negative changes (pairs; dual / cross ordered right):")
    d, c = wins_by_change(*heads["dual"], changes), wins_by_change(*heads["cross"], changes)
    for kind in sorted(d, key=lambda x: -d[x][0]):
        print(f"     {kind:14s} n={d[kind][0]:5d}  {d[kind][1]:5.1f} / {c[kind][1]:5.1f}")


FUSION_ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)

def blend(dual: torch.Tensor, # [P] dual cosines of the scored pairs
          head: torch.Tensor, # [P] the matching head's logits of the same pairs
          tau: float, alpha: float) -> torch.Tensor:
    "dual/τ + α × head [P]: the dual logit plus the head at α times its own scale (α = 1, τ = 1/w: the cross score of cross_residual w)."
    return dual / tau + alpha * head


def top1_changes(top: list[int], first: list[int], clips: list[str], scenes: dict) -> collections.Counter:
    "For every caption whose top-1 clip is not its own: what that clip changes (`scene_change`), counted."
    return collections.Counter(scene_change(scenes[clips[f]], scenes[clips[t]]) for t, f in zip(top, first) if t != f)


def part_fusion(model, queries, gallery, clips, first, gt, scenes, sim, dev, cfg, args):
    from snps3.downstream import cross_pair_scores, reranked, topk_pairs
    from snps3.eval import retrieval_metrics
    pairs = topk_pairs(sim, args.rerank_k, 1)                                               # [Nt*k,2]
    head = cross_pair_scores(model, queries, gallery, pairs, dev, head_only=True)           # [Nt*k]
    dual, tau, w = sim[pairs[:, 0], pairs[:, 1]], cfg.loss.temperature, cfg.model.cross_residual
    r1 = lambda m: retrieval_metrics(m, gt)["t2v/R@1"]
    cross = reranked(sim, pairs, head + w * dual)
    print(f"\n6. the matching head against the dual score over each caption's dual top-{args.rerank_k} (model.cross_residual {w})")
    print(f"   logit spread (std): head {head.std().item():.2f}, dual sim/τ {(dual / tau).std().item():.2f}")
    print(f"   t2v R@1: dual {r1(sim):.1f}, head alone {r1(reranked(sim, pairs, head)):.1f}, the cross score {r1(cross):.1f}")
    print("   dual/τ + α × head: " + ", ".join(f"α {a}: {r1(reranked(sim, pairs, blend(dual, head, tau, a))):.1f}" for a in FUSION_ALPHAS))
    for name, m in (("dual", sim), ("cross score", cross)):
        ch = top1_changes(m.argmax(1).tolist(), first, clips, scenes)
        print(f"   wrong top-1 ({name}): {sum(ch.values())}; what it changes: " + ", ".join(f"{k} {v}" for k, v in ch.most_common()))


if __name__ == "__main__":
    main()
