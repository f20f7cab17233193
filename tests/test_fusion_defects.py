"""Regression tests for the defects of issue 8 that live in the training step (the loss-level ones, LVWM's count bias and
all-pairs' double-counted positive, have known-answer tests in nbs/06_losses.ipynb; P3E's fusion input is tested in
nbs/05_models.snp.ipynb; attention from padded clips in nbs/07_train.ipynb).

Each test checks behaviour (what the sampler is given, what the collectives receive, what the loss adds up to), so it
fails if the defect comes back.
"""
import pytest
import torch

from snps3.testing import tiny_config, fake_video_batch, minilm_tokenizer


@pytest.fixture(scope="module")
def tok():
    return minilm_tokenizer()


def _ctx(cfg, tok, **kw):
    from snps3.objectives import StepContext
    from snps3.distributed import DistInfo
    sig = torch.zeros(len(tok), dtype=torch.bool)
    for w in ("circle", "square", "red", "blue", "moves", "left", "right"): sig[tok.convert_tokens_to_ids(w)] = True
    return StepContext(cfg, DistInfo(), 0, sig, tok.mask_token_id, torch.tensor(tok.all_special_ids), None, **kw)


def _batch(cfg, tok, ctx, captions):
    from snps3.data.text import encode_captions, choose_lvwm_words
    b = fake_video_batch(cfg, batch_size=len(captions), seed=0)
    enc = encode_captions(tok, captions, cfg.data.max_text_len)
    pos, valid = choose_lvwm_words(enc["input_ids"], ctx.significant, cfg.loss.lvwm_words, torch.Generator().manual_seed(0))
    return {**b, **enc, "masked_ids": enc["input_ids"], "mlm_labels": torch.full_like(enc["input_ids"], -100),
            "lvwm_pos": pos, "lvwm_valid": valid, "index": torch.arange(len(captions))}


def _model(cfg):
    from snps3.models.snp import SNPModel
    torch.manual_seed(0)
    return SNPModel(cfg).train()


CAPS = ["a red circle moves left", "a red circle moves left", "a blue square moves right", "a blue circle moves right"]


def test_negatives_at_contrastive_temperature_and_never_the_same_caption(tok, monkeypatch):
    """Defect: hard negatives and ITM false captions were drawn at temperature 1 on cosines (weights within e^2 of each
    other) and could be the same caption text. Now: ∝ softmax(sim / loss.negative_temperature), same text excluded."""
    import snps3.losses as L
    from snps3.objectives import pretrain_losses
    cfg = tiny_config(**{"loss.hard_k": 1, "loss.negative_temperature": 0.07})
    ctx = _ctx(cfg, tok)
    calls, orig = [], L.sample_hard_negatives
    def spy(sim, pos, k, generator=None, exclude_mask=None, temperature=1.0):
        calls.append((exclude_mask.clone() if exclude_mask is not None else None, temperature))
        return orig(sim, pos, k, generator, exclude_mask, temperature)
    monkeypatch.setattr(L, "sample_hard_negatives", spy)
    pretrain_losses(_model(cfg), _batch(cfg, tok, ctx, CAPS), ctx)
    assert len(calls) == 2                                                           # cross matching + ITM
    for excl, tau in calls:
        assert tau == pytest.approx(0.07)
        assert excl is not None and bool(excl[0, 1]) and bool(excl[1, 0])           # rows 0 and 1 share their caption
        assert not bool(excl[0, 2]) and not bool(excl[2, 3])


def test_same_clip_is_never_a_negative(tok):
    "Two captions of one clip in a batch: the clip ids make them excluded pairs too (a false negative otherwise)."
    from snps3.objectives import same_pair_mask, _allowed_exclusion
    ids = torch.tensor([[1, 2, 0], [1, 3, 0], [4, 5, 6]])
    same = same_pair_mask(ids, torch.tensor([7, 7, 8]))
    assert same.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    # with media types, an image and a video are never negatives for each other (the cross head's shortcut otherwise)
    typed = same_pair_mask(ids, torch.tensor([7, 8, 9]), torch.tensor([0, 0, 1]))
    assert typed.tolist() == [[True, False, True], [False, True, True], [True, True, True]]
    # a row with no other column left keeps its exclusions relaxed instead of failing the sampler
    assert _allowed_exclusion(torch.ones(2, 2, dtype=torch.bool)).sum() == 0
    # a lone image among videos: its row is relaxed, and so is its row of the transposed (clip→caption) matrix
    lone = same_pair_mask(torch.tensor([[1], [2], [3]]), None, torch.tensor([0, 0, 1]))
    from snps3.losses import sample_hard_negatives
    for m in (lone, lone.T.contiguous()):
        ex = _allowed_exclusion(m)
        assert ex[2].sum() == 0 and bool(ex[0, 2])
        sample_hard_negatives(torch.zeros(3, 3), torch.arange(3), 1, torch.Generator().manual_seed(0), ex, 0.05)   # no error


def test_item_ids_follow_the_dataset_items(tiny_bench, tmp_path):
    "clip / type ids are indexed like batch['index'] (one dataset item per clip), not like annotation lines."
    from snps3.config import load_config
    from snps3.models.snp import SNPModel
    from snps3.train import build_pretrain_data
    from snps3.distributed import setup_distributed
    cfg = load_config("tiny_cpu", [f"data.root={tiny_bench}", "data.batch_size=4"])
    data = build_pretrain_data(cfg, SNPModel(cfg), tmp_path, setup_distributed(torch.device("cpu")))
    items = data.dataset.items
    assert len(data.type_ids) == len(items) == len(data.clip_ids)
    assert data.type_ids.tolist() == [int(it["type"] == "image") for it in items]
    assert 0 < int(data.type_ids.sum()) < len(items)                                # the tiny benchmark has both kinds


def test_lvwm_both_adds_the_two_stages(tok):
    "Defect: loss.lvwm_stage=both averaged the 'before' and 'after' losses; the reference adds them."
    from snps3.objectives import lvwm_term
    losses = {}
    for stage in ("before", "after", "both"):
        cfg = tiny_config(**{"loss.lvwm_stage": stage})
        ctx = _ctx(cfg, tok)
        model = _model(cfg).eval()
        b = _batch(cfg, tok, ctx, CAPS)
        with torch.no_grad():
            vis = model.encode_video(b["video"], b["clip_mask"])
            txt = model.encode_text(b["input_ids"], b["attention_mask"])
            losses[stage], _ = lvwm_term(model, b, txt.hidden, vis.video_emb, torch.arange(4), ctx)
    assert losses["both"].item() == pytest.approx(losses["before"].item() + losses["after"].item(), rel=1e-5)


def test_every_reduction_runs_on_the_collective_device(monkeypatch):
    """Defect: global_mean, the log record, check_finite and the summary reduced CPU tensors, which NCCL refuses (a
    multi-GPU job would stop at its first step). Every tensor handed to a collective must live on dist_info.device.
    Here that device is 'meta' (a stand-in for cuda on this CPU machine): a CPU tensor reaching the collective fails."""
    import snps3.train as T, snps3.distributed as D, snps3.objectives as O
    seen = []
    def fake_all_reduce(x, dist_info):
        D._check_collective_device(x, dist_info)
        seen.append(x.device.type)
        return torch.zeros(x.shape, dtype=x.dtype)                                   # values do not matter here
    monkeypatch.setattr(D, "all_reduce_sum", fake_all_reduce)                        # what reduce_scalars calls
    info = D.DistInfo(rank=0, world_size=1, is_ddp=True, device=torch.device("meta"))
    ctx = O.StepContext(tiny_config(), info, 0, torch.zeros(3, dtype=torch.bool), 0, torch.tensor([0]))
    O.global_mean(torch.tensor(2.0), 4, ctx)
    T._log_record(5, 1e-3, [{"loss": 1.0}], info)
    T.check_finite(0, {"a": torch.tensor(1.0)}, torch.tensor(1.0), info, None)
    assert seen == ["meta"] * 3
    with pytest.raises(RuntimeError, match="collective on a cpu tensor"):
        D._check_collective_device(torch.zeros(1), info)


def test_gathers_check_the_device():
    "gather_no_grad and all_reduce_sum refuse a tensor on the wrong device before reaching the process group."
    from snps3.distributed import DistInfo, all_reduce_sum, gather_no_grad
    info = DistInfo(rank=0, world_size=2, is_ddp=True, device=torch.device("meta"))
    for fn in (all_reduce_sum, gather_no_grad):
        with pytest.raises(RuntimeError, match="dist_info.device"):
            fn(torch.zeros(2), info)


def test_mlm_warmup_keeps_mlm_gradient_off_the_shared_bert(tok):
    "loss.mlm_warmup: during the warm-up the MLM loss trains its head only; after the ramp it reaches the BERT in full."
    from snps3.objectives import mlm_term, mlm_trunk_grad
    cfg = tiny_config(**{"loss.mlm_warmup": 2, "loss.mlm_ramp": 4})
    assert [mlm_trunk_grad(s, cfg.loss) for s in range(7)] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    model = _model(cfg)
    ids = torch.tensor([[101, 2417, 4418, 102]]); labels = torch.tensor([[-100, 2417, -100, -100]])
    for step, reaches in ((0, False), (5, True)):
        ctx = _ctx(cfg, tok); ctx.step = step
        model.zero_grad()
        hidden = model.encode_text(ids, torch.ones_like(ids)).hidden
        loss, _ = mlm_term(model, hidden, labels, ctx)
        loss.backward()
        assert model.mlm_transform.dense.weight.grad is not None                    # the head always learns
        g = model.text.encoder.layer[0].attention.self.query.weight.grad
        assert (g is not None and g.abs().sum() > 0) == reaches
        assert (model.text.embeddings.word_embeddings.weight.grad is not None) == reaches   # nor the tied decoder


@pytest.mark.parametrize("overrides, passes, names", [
    ({}, 3, {"cross_match", "cross_match_v2t", "itm"}),                                           # pos, k negative clips, false captions
    ({"loss.cross_match_v2t": False}, 3, {"cross_match", "itm"}),
    ({"loss.cross_match_v2t": False, "loss.itm_negatives": "clips"}, 2, {"cross_match", "itm"}),  # ITM reuses the negative clips
    ({"loss.w_cross_distill": 1.0}, 3, {"cross_match", "cross_match_v2t", "itm", "cross_distill"}),  # distillation reuses the scored pairs
])
def test_matching_passes_and_losses(tok, monkeypatch, overrides, passes, names):
    "The cross passes the matching terms run, and the losses they return, per option (item 5: what can be shared)."
    from snps3.objectives import matching_terms
    cfg = tiny_config(**overrides)
    ctx = _ctx(cfg, tok)
    model = _model(cfg)
    b = _batch(cfg, tok, ctx, CAPS)
    vis = model.encode_video(b["video"], b["clip_mask"]); txt = model.encode_text(b["input_ids"], b["attention_mask"])
    calls = []
    orig = model.cross
    monkeypatch.setattr(model, "cross", lambda *a, **k: calls.append(a[0].shape[0]) or orig(*a, **k))
    losses, logs = matching_terms(model, b, vis, txt, vis.video_emb, torch.arange(4), ctx)
    assert len(calls) == passes and set(losses) == names
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.match_head[0].weight.grad is not None and model.itm_head.weight.grad is not None


def test_distillation_teacher_is_the_dual_similarity_of_the_scored_pairs(tok, monkeypatch):
    "loss.w_cross_distill: the teacher logits are sim/τ of exactly the (caption, clip) pairs the cross head scored, own clip first."
    import snps3.losses as L
    from snps3.objectives import matching_terms
    cfg = tiny_config(**{"loss.w_cross_distill": 1.0, "loss.hard_k": 2})
    ctx = _ctx(cfg, tok)
    model = _model(cfg)
    b = _batch(cfg, tok, ctx, CAPS)
    vis = model.encode_video(b["video"], b["clip_mask"]); txt = model.encode_text(b["input_ids"], b["attention_mask"])
    drawn, seen = [], {}
    orig_sample, orig_distill = L.sample_hard_negatives, L.cross_distill_loss
    monkeypatch.setattr(L, "sample_hard_negatives", lambda *a, **k: drawn.append(orig_sample(*a, **k)) or drawn[-1])
    monkeypatch.setattr(L, "cross_distill_loss", lambda s, t: seen.update(s=s, t=t) or orig_distill(s, t))
    matching_terms(model, b, vis, txt, vis.video_emb, torch.arange(4), ctx)
    negs = drawn[0]                                                                  # [4,2] the cross-match negatives
    sim = (txt.text_emb @ vis.video_emb.T).detach()                                  # [4,4]
    want = torch.cat([sim.diagonal()[:, None], sim.gather(1, negs)], 1) / cfg.loss.temperature
    torch.testing.assert_close(seen["t"], want, atol=1e-5, rtol=0)
    assert seen["s"].shape == (4, 3) and seen["s"].requires_grad


def _zero_match_head(model):
    "The matching head's last layer set to 0: its logit is 0 for every pair, so a cross score is its dual term alone."
    last = model.match_head[-1]
    with torch.no_grad(): last.weight.zero_(); last.bias.zero_()


@pytest.mark.parametrize("swapped", [False, True])
def test_cross_residual_adds_the_dual_logit_of_each_scored_pair(tok, monkeypatch, swapped):
    """model.cross_residual = w: every score the matching losses see is head + w × the dual cosine of that very pair — the own
    clip, each drawn negative clip, the false caption (a swapped one encoded for it) — so with a zero head they are w × cosine."""
    import snps3.losses as L
    from snps3.objectives import matching_terms
    w = 20.0
    cfg = tiny_config(**{"model.cross_residual": w, "loss.hard_k": 2})
    ctx = _ctx(cfg, tok)
    model = _model(cfg); _zero_match_head(model)
    b = _batch(cfg, tok, ctx, CAPS)
    if swapped:                                                                      # clips 0-2: captions no batch item has
        alt = tok(["a green circle moves left", "a red square moves up", "a blue circle moves down", CAPS[3]], padding="max_length", max_length=b["input_ids"].shape[1], truncation=True, return_tensors="pt")
        b = {**b, "swapped_ids": alt["input_ids"], "swapped_ok": torch.tensor([True, True, True, False])}
    vis = model.encode_video(b["video"], b["clip_mask"]); txt = model.encode_text(b["input_ids"], b["attention_mask"])
    drawn, seen = [], []
    orig_sample, orig_loss = L.sample_hard_negatives, L.cross_match_loss
    monkeypatch.setattr(L, "sample_hard_negatives", lambda *a, **k: drawn.append(orig_sample(*a, **k)) or drawn[-1])
    monkeypatch.setattr(L, "cross_match_loss", lambda p, n: seen.append((p.detach(), n.detach())) or orig_loss(p, n))
    losses, logs = matching_terms(model, b, vis, txt, vis.video_emb, torch.arange(4), ctx)
    sim = (txt.text_emb @ vis.video_emb.T).detach()                                  # [4,4] caption x clip cosines
    (pos, neg), (pos2, false) = seen                                                 # caption-anchored, then clip-anchored
    torch.testing.assert_close(pos, w * sim.diagonal(), atol=1e-4, rtol=0)
    torch.testing.assert_close(neg, w * sim.gather(1, drawn[0]), atol=1e-4, rtol=0)  # the k = 2 drawn clips of each caption
    torch.testing.assert_close(pos2, pos)
    f = drawn[1][:, 0]                                                               # each clip's sampled false caption
    want = w * sim[f, torch.arange(4)]
    if swapped:                                                                      # clips 0-2 get their swapped caption (encoded), clip 3 its sampled one
        emb = model.encode_text(b["swapped_ids"], b["attention_mask"]).text_emb.detach()   # [4,E] (same mask: same length)
        want[:3] = w * (emb[:3] * vis.video_emb[:3].detach()).sum(-1)
    torch.testing.assert_close(false[:, 0], want, atol=1e-4, rtol=0)
    assert logs["cross_match_head_acc"] == 0.0                                       # a zero head never ranks the own clip strictly first
    sum(losses.values()).backward()
    assert model.match_head[-1].weight.grad.abs().sum() > 0                          # the head still learns (the dual term has no gradient)


def test_cross_residual_is_refused_below_zero():
    with pytest.raises(ValueError, match="cross_residual"): tiny_config(**{"model.cross_residual": -1.0})
