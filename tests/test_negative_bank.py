"""loss.negative_bank: the cross head's hard negatives drawn from every training item (cached frozen-backbone features),
so that it trains on the candidates it reranks at test time rather than on the few clips of its micro-batch."""
import dataclasses

import pytest
import torch

from helpers import metrics, pretrain_args, run_cli


@pytest.fixture(scope="module")
def built(tiny_bench, tmp_path_factory):
    from snps3.config import load_config
    from snps3.distributed import setup_distributed
    from snps3.models.snp import SNPModel
    from snps3.train import build_negative_bank, build_pretrain_data
    cfg = load_config("tiny_cpu", [f"data.root={tiny_bench}", "data.batch_size=4", "loss.negative_bank=true"])
    torch.manual_seed(0)
    model = SNPModel(cfg).eval()
    data = build_pretrain_data(cfg, model, tmp_path_factory.mktemp("run"), setup_distributed(torch.device("cpu")))
    return cfg, model, data, build_negative_bank(cfg, model, data, torch.device("cpu"), progress=False)


def test_bank_features_give_the_tokens_of_the_frames(built):
    "A cached item through the current projection equals encoding its (middle) frames: the cache can never go stale."
    from snps3.data.datasets import ClipDataset, collate_clips
    cfg, model, data, bank = built
    items = data.dataset.items
    assert len(bank) == len(items) and bank.readable.all()
    d = cfg.data
    cds = ClipDataset([it["clip_name"] for it in items[:3]], d.root, d.n_clips, d.num_frames, d.image_size, model.visual.mean, model.visual.std)
    b = collate_clips([cds[i] for i in range(3)])
    with torch.no_grad():
        want = model.encode_video(b["video"], b["clip_mask"])
        got = model.visual.from_features(bank.feats[:3], bank.mask[:3])
    torch.testing.assert_close(got.tokens, want.tokens, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.video_emb, want.video_emb, atol=1e-5, rtol=0)
    # every caption of every item is indexed, and points back at its items
    for i, it in enumerate(items):
        for c in it["captions"]: assert i in bank.captions[c].tolist()


def test_exclusion_known_answer():
    "Own clip, another item with the same caption text, another media type and unreadable items are never drawn."
    from snps3.objectives import NegativeBank, bank_exclusion
    mask = torch.ones(5, 2, dtype=torch.bool); mask[4] = False                          # item 4 unreadable
    bank = NegativeBank(torch.zeros(5, 2, 3), mask, torch.tensor([0, 0, 1, 2, 3]), torch.tensor([0, 0, 0, 1, 0]),
                        {"a red circle": torch.tensor([0, 2]), "a blue star": torch.tensor([3])})
    ex = bank_exclusion(bank, ["a red circle", "a green square"], torch.tensor([0, 1]), torch.tensor([0, 0]))
    assert ex.tolist() == [[True, True, True, True, True],       # clip 0 (items 0, 1), same text (item 2), image (3), unreadable (4)
                           [False, False, True, True, True]]     # own clip 1 (item 2), image, unreadable
    untyped = bank_exclusion(bank, ["a green square"], torch.tensor([1]), None)
    assert untyped.tolist() == [[False, False, True, False, True]]


def test_sampling_follows_the_dual_ranking_over_the_whole_bank(built):
    "Every draw is an allowed item; at a low temperature the draws are the caption's dual top items of the whole bank."
    from snps3.distributed import DistInfo
    from snps3.objectives import StepContext, bank_exclusion, bank_negatives
    cfg, model, data, bank = built
    items, n = data.dataset.items, len(data.dataset.items)
    idx = torch.arange(min(4, n))
    batch = {"index": idx, "captions": [items[i]["captions"][0] for i in idx.tolist()]}
    text_emb = torch.nn.functional.normalize(torch.randn(len(idx), cfg.model.embed_dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    ctx = StepContext(cfg, DistInfo(), 0, None, 0, None, None, data.clip_ids, data.type_ids, {}, bank)
    seen = []
    for step in range(20):
        ctx.step = step
        tokens, mask, neg_sim = bank_negatives(model, text_emb, batch, ctx, k=2)
        assert tokens.shape[:2] == mask.shape == (len(idx) * 2, cfg.data.n_clips)
        assert tokens.requires_grad                                                    # the projection learns from the negatives
        # which bank items were drawn: match the tokens back to the bank
        with torch.no_grad(): all_tok = model.visual.from_features(bank.feats, bank.mask).tokens   # [Nb,T,D]
        d = (tokens.detach()[:, None] - all_tok[None]).abs().flatten(2).amax(-1)      # [B*k,Nb]
        seen.append(d.argmin(1).view(len(idx), 2))
        with torch.no_grad(): want_sim = text_emb @ model.visual.from_features(bank.feats, bank.mask).video_emb.T   # [B,Nb]
        torch.testing.assert_close(neg_sim, want_sim.gather(1, seen[-1]), atol=1e-5, rtol=0)   # the dual similarity of the drawn items
    seen = torch.stack(seen, 1).flatten(1)                                             # [B,20*k]
    ex = bank_exclusion(bank, batch["captions"], data.clip_ids[idx], data.type_ids[idx])
    for r in range(len(idx)):
        assert not ex[r, seen[r]].any(), (r, seen[r])
    # temperature → 0: only the two best allowed items by dual similarity are drawn
    cold_cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, negative_temperature=1e-4))
    cold = StepContext(cold_cfg, DistInfo(), 0, None, 0, None, None, data.clip_ids, data.type_ids, {}, bank)
    with torch.no_grad(): emb = model.visual.from_features(bank.feats, bank.mask).video_emb
    sim = (text_emb @ emb.T).masked_fill(ex, -1e9)
    tokens, _, cold_sim = bank_negatives(model, text_emb, batch, cold, k=2)
    with torch.no_grad(): all_tok = model.visual.from_features(bank.feats, bank.mask).tokens
    drawn = (tokens.detach()[:, None] - all_tok[None]).abs().flatten(2).amax(-1).argmin(1).view(len(idx), 2)
    assert [sorted(r) for r in drawn.tolist()] == [sorted(r) for r in sim.topk(2, 1).indices.tolist()]


def test_tiny_run_with_the_bank_and_clear_errors(tiny_bench, tmp_path):
    r = run_cli(pretrain_args(tiny_bench, tmp_path / "run", "train.max_steps=3", "loss.negative_bank=true"))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = metrics(tmp_path / "run")
    assert [x["step"] for x in rows] == [1, 2, 3] and all("loss/cross_match" in x for x in rows)
    bad = run_cli(pretrain_args(tiny_bench, tmp_path / "bad", "loss.negative_bank=true", "loss.cross_match=all_pairs"))
    assert bad.returncode != 0 and "loss.negative_bank" in bad.stderr and "hard_k" in bad.stderr
    unfrozen = run_cli(pretrain_args(tiny_bench, tmp_path / "unfrozen", "loss.negative_bank=true", "model.freeze_vision=false"))
    assert unfrozen.returncode != 0 and "model.freeze_vision" in unfrozen.stderr


def test_global_video_token_trains_evaluates_and_explains(tiny_bench, tmp_path):
    "model.global_video_token: a run trains, the retrieval evaluation scores it, and attention maps keep one column per clip."
    from helpers import results
    r = run_cli(pretrain_args(tiny_bench, tmp_path / "run", "train.max_steps=2", "model.global_video_token=true"))
    assert r.returncode == 0, r.stderr[-3000:]
    ev = run_cli(["eval", "--config", "tiny_cpu", "--no-progress", "task=retrieval", f"data.root={tiny_bench}",
                  f"eval.checkpoint={tmp_path / 'run'}", f"train.save_dir={tmp_path / 'ev'}"])
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "cross/t2v/R@1" in results(tmp_path / "ev")["metrics"]
    from snps3.downstream import load_for_eval
    from snps3.testing import fake_video_batch
    from snps3.viz import word_to_clip_attention, gradcam_word_to_clip
    model, cfg, _ = load_for_eval(tmp_path / "run")
    b = fake_video_batch(cfg, batch_size=2)
    for fn in (word_to_clip_attention, gradcam_word_to_clip):
        att = fn(model, b["input_ids"], b["attention_mask"], b["video"], b["clip_mask"])
        assert att.shape == (2, b["input_ids"].shape[1], cfg.data.n_clips), (fn.__name__, att.shape)


def test_rescore_keeps_the_candidates_the_cross_head_ranks_high(built):
    """loss.negative_rescore: the kept negatives are drawn ∝ softmax of the cross head's own scores of the candidates; with the
    scores spread far apart the draw is the head's top candidate."""
    import copy
    from snps3.objectives import pick_by_score, rescore_negatives
    cfg, model, data, bank = built
    model = copy.deepcopy(model).double().eval()                                                   # float64: room to spread the scores
    B, m, k = 2, 4, 2
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (B, 6), generator=g); att = torch.ones_like(ids)
    with torch.no_grad():
        cand = model.visual.from_features(bank.feats[:m].double().repeat(B, 1, 1), bank.mask[:m].repeat(B, 1))   # [B*m,N,D]
        direct = lambda: model.match_score(model.cross(ids.repeat_interleave(m, 0), att.repeat_interleave(m, 0), cand.tokens, cand.mask).pooled).view(B, m)
        got = rescore_negatives(model, ids, att, cand.tokens, cand.mask, k, torch.Generator().manual_seed(1))
        assert got.tolist() == pick_by_score(direct(), k, torch.Generator().manual_seed(1)).tolist()
        model.match_head[-1].weight.mul_(1e9); model.match_head[-1].bias.zero_()                 # scores far apart
        s = direct()
        assert (s.sort(1).values.diff(1) > 30).all(), s
        top = rescore_negatives(model, ids, att, cand.tokens, cand.mask, 1, torch.Generator().manual_seed(2))
    assert top[:, 0].tolist() == s.argmax(1).tolist()


def test_tiny_run_with_rescored_negatives_and_clear_errors(tiny_bench, tmp_path):
    r = run_cli(pretrain_args(tiny_bench, tmp_path / "run", "train.max_steps=2", "loss.negative_rescore=6"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert all("loss/cross_match" in x for x in metrics(tmp_path / "run"))
    bad = run_cli(pretrain_args(tiny_bench, tmp_path / "bad", "loss.negative_rescore=2"))     # hard_k is 3: nothing to pick
    assert bad.returncode != 0 and "loss.negative_rescore" in bad.stderr and "hard_k" in bad.stderr
