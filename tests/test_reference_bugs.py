"""Regression tests for the known bugs of the reference SNP-S3 code (DESIGN.md, "What SNP-S3 is", last paragraph).

Each test checks the behaviour of our functions (what the model is fed, what masking returns), so that it fails
if the reference bug came back, not merely if some source text changed.
"""
import json

import pytest
import torch

from snps3.testing import tiny_config, fake_video_batch, fake_captions, minilm_tokenizer

SIGNIFICANT_WORDS = ("circle", "square", "triangle", "star", "moves", "red", "green", "blue", "yellow")


# ---------------------------------------------------------------- shared helpers

@pytest.fixture(scope="module")
def tok():
    return minilm_tokenizer()


def _significant(tok, words=SIGNIFICANT_WORDS) -> torch.Tensor:
    "BoolTensor [V]: True for the (single-WordPiece) ids of `words`."
    sig = torch.zeros(len(tok), dtype=torch.bool)
    for w in words: sig[tok.convert_tokens_to_ids(w)] = True
    return sig


def _ctx(cfg, tok, sig):
    from snps3.objectives import StepContext
    from snps3.distributed import DistInfo
    return StepContext(cfg, DistInfo(), 0, sig, tok.mask_token_id, torch.tensor(tok.all_special_ids), None)


def _pretrain_batch(cfg, tok, sig, seed=0) -> dict:
    "A fake batch with MSSM-masked ids where every masked position holds [MASK] (so a leak of the raw ids is visible)."
    from snps3.data.text import mask_tokens, choose_lvwm_words
    b = fake_video_batch(cfg, seed=seed)
    ids, att = b["input_ids"], b["attention_mask"]                                  # [B,L]
    _, labels = mask_tokens(ids, att, mode="mssm", significant=sig, lemma_variants={}, mask_prob=0.3,
                            mask_token_id=tok.mask_token_id, vocab_size=len(tok), special_ids=set(tok.all_special_ids),
                            generator=torch.Generator().manual_seed(seed))
    assert (labels != -100).any(1).all()                                            # every caption has a target
    masked = torch.where(labels != -100, torch.full_like(ids, tok.mask_token_id), ids)  # [B,L] all targets hidden
    pos, valid = choose_lvwm_words(ids, sig, cfg.loss.lvwm_words, torch.Generator().manual_seed(seed))
    return {**b, "masked_ids": masked, "mlm_labels": labels, "lvwm_pos": pos, "lvwm_valid": valid}


def _model(cfg):
    from snps3.models.snp import SNPModel
    torch.manual_seed(0)
    return SNPModel(cfg).train()


# ---------------------------------------------------------------- 1. text-pass MLM on masked input

def test_mlm_text_loss_sees_masked_input(tok, monkeypatch):
    """Reference bug: the text-encoder MLM loss (mlm_text) was computed on the *unmasked* caption, so the targets leak.
    The text pass whose hidden states feed the mlm_text loss must be fed the masked ids ([MASK] at every label)."""
    from snps3.objectives import pretrain_losses, mlm_term
    cfg = tiny_config(**{"loss.vtc": False, "loss.lvwm": False, "loss.cross_match": "off", "loss.itm": False,
                         "loss.w_mlm": 0.0, "loss.mlm_text": True})
    sig = _significant(tok); model, batch, ctx = _model(cfg), _pretrain_batch(cfg, tok, sig), _ctx(cfg, tok, sig)
    labels = batch["mlm_labels"]; sel = labels != -100
    text_calls, mlm_hidden = [], []
    enc, logits = model.encode_text, model.mlm_logits
    def spy_encode_text(ids, att):
        out = enc(ids, att); text_calls.append((ids.clone(), out)); return out
    def spy_mlm_logits(hidden, lab, *args):
        mlm_hidden.append(hidden); return logits(hidden, lab, *args)
    monkeypatch.setattr(model, "encode_text", spy_encode_text)
    monkeypatch.setattr(model, "mlm_logits", spy_mlm_logits)
    _, losses, _ = pretrain_losses(model, batch, ctx)
    assert "mlm_text" in losses and len(mlm_hidden) == 1                  # w_mlm=0: the only MLM head call is mlm_text
    fed = [ids for ids, out in text_calls if out.hidden is mlm_hidden[0]]
    assert len(fed) == 1, "the mlm_text hidden states do not come from a text pass (encode_text)"
    assert (fed[0][sel] == tok.mask_token_id).all(), "the text pass feeding mlm_text saw the targets (unmasked caption)"
    assert torch.equal(fed[0], batch["masked_ids"])
    # and the value: the loss equals MLM on a text pass over the masked ids, not over the raw ids
    monkeypatch.undo()
    with torch.no_grad():
        want = mlm_term(model, model.encode_text(batch["masked_ids"], batch["attention_mask"]).hidden, labels, ctx)[0]
        leak = mlm_term(model, model.encode_text(batch["input_ids"], batch["attention_mask"]).hidden, labels, ctx)[0]
    torch.testing.assert_close(losses["mlm_text"].detach(), want)
    assert not torch.allclose(want, leak)                                 # the check can tell the two apart


# ---------------------------------------------------------------- 2. ITM positives and negatives built alike

def test_itm_positives_and_negatives_use_raw_captions(tok, monkeypatch):
    """Reference bug: ITM positives were cross passes over *masked* captions while the negatives used unmasked ones,
    so the [MASK] token alone told them apart. Both must be cross passes over raw (unmasked) captions."""
    from snps3.objectives import pretrain_losses
    cfg = tiny_config(**{"loss.itm": True, "loss.cross_match": "hard_k", "loss.w_mlm": 1.0, "loss.mlm_text": True})
    sig = _significant(tok); model, batch, ctx = _model(cfg), _pretrain_batch(cfg, tok, sig), _ctx(cfg, tok, sig)
    B = batch["input_ids"].shape[0]
    cross_calls, itm_in = [], []
    cross, itm = model.cross, model.itm_logits
    def spy_cross(ids, att, *a, **kw):
        out = cross(ids, att, *a, **kw); cross_calls.append((ids.clone(), att.clone(), out.pooled.detach())); return out
    def spy_itm(pooled):
        itm_in.append(pooled.detach()); return itm(pooled)
    monkeypatch.setattr(model, "cross", spy_cross)
    monkeypatch.setattr(model, "itm_logits", spy_itm)
    _, losses, _ = pretrain_losses(model, batch, ctx)
    assert "itm" in losses and len(itm_in) == 1 and itm_in[0].shape[0] == 2 * B
    def fed_ids(pooled):
        "The (ids, attention) of the cross pass whose pooled output is `pooled`."
        hits = [(i, a) for i, a, p in cross_calls if p.shape == pooled.shape and torch.equal(p, pooled)]
        assert len(hits) == 1, "ITM pooled features do not come from exactly one cross pass"
        return hits[0]
    pos_ids, pos_att = fed_ids(itm_in[0][:B])
    neg_ids, neg_att = fed_ids(itm_in[0][B:])
    assert (batch["masked_ids"] == tok.mask_token_id).any()               # the masked caption was on offer
    for name, ids in (("positives", pos_ids), ("negatives", neg_ids)):
        assert not (ids == tok.mask_token_id).any(), f"ITM {name} were built from masked captions"
    assert torch.equal(pos_ids, batch["input_ids"]) and torch.equal(pos_att, batch["attention_mask"])
    raw = [r[a.bool()].tolist() for r, a in zip(batch["input_ids"], batch["attention_mask"])]
    for r, a in zip(neg_ids, neg_att): assert r[a.bool()].tolist() in raw  # each false caption is a raw caption of the batch


# ---------------------------------------------------------------- 3. MSSM fallback

def test_mssm_fallback_labels_real_tokens_with_original_ids(tok):
    """Reference bug: when a caption has no significant word, the MSSM fallback masked the wrong positions and labelled
    them with the [MASK] id. Fallback labels must be the original ids, at real (non-special, non-pad) tokens only."""
    from snps3.data.text import mask_tokens, encode_captions
    caps = ["the of and a", "a small red circle moves left", "it is there and then it is not here at all"]
    enc = encode_captions(tok, caps, 16); ids, att = enc["input_ids"], enc["attention_mask"]    # [3,L]
    sig = _significant(tok)
    special = torch.tensor(tok.all_special_ids)
    real = att.bool() & ~torch.isin(ids, special)
    no_sig = ~(real & sig[ids]).any(1)
    assert no_sig.tolist() == [True, False, True]                          # captions 0 and 2 take the fallback
    seen_mask = 0
    for seed in range(20):
        masked, labels = mask_tokens(ids, att, mode="mssm", significant=sig, lemma_variants={}, mask_prob=0.3,
                                     mask_token_id=tok.mask_token_id, vocab_size=len(tok), special_ids=set(tok.all_special_ids),
                                     generator=torch.Generator().manual_seed(seed))
        sel = labels != -100                                               # [3,L]
        assert sel.any(1).all(), "a caption got no masked position"
        assert not (labels == tok.mask_token_id).any(), "a label is the [MASK] id"
        assert (real | ~sel).all(), "a masked position is a special or padding token"
        assert torch.equal(labels[sel], ids[sel]), "labels are not the original token ids"
        assert torch.equal(masked[~sel], ids[~sel]), "a position without a label was changed"
        seen_mask += int((masked[sel & no_sig[:, None]] == tok.mask_token_id).sum())
    assert seen_mask > 0                                                    # the fallback really replaces with [MASK]


# ---------------------------------------------------------------- 4. same-lemma helper with an empty list

def test_same_lemma_variant_with_empty_list_is_a_token_id(tok, tmp_path):
    """Reference bug: the same-lemma helper returned a single character of the word when its lemma list was empty.
    With an empty list we must return the token id itself (an int in the vocabulary), also through MSSM masking."""
    from snps3.data.text import same_lemma_variant, mask_tokens, encode_captions
    from snps3.miner import load_lemma_variants
    tid = tok.convert_tokens_to_ids("circle")
    path = tmp_path / "lemma_variants.json"; path.write_text(json.dumps({str(tid): []}))
    variants = load_lemma_variants(path)
    assert variants == {tid: []}
    for table in (variants, {}, None, {tid: [tid]}):
        for seed in range(5):
            out = same_lemma_variant(tid, table, torch.Generator().manual_seed(seed))
            assert type(out) is int and out == tid, f"{table}: got {out!r}"
    # MSSM's 10 % replacement with empty lemma lists: every masked position holds [MASK] or its own id
    enc = encode_captions(tok, fake_captions(8), 16); ids, att = enc["input_ids"], enc["attention_mask"]
    sig = _significant(tok)
    empty = {int(i): [] for i in sig.nonzero().squeeze(1)}
    for seed in range(30):
        masked, labels = mask_tokens(ids, att, mode="mssm", significant=sig, lemma_variants=empty, mask_prob=0.5,
                                     mask_token_id=tok.mask_token_id, vocab_size=len(tok), special_ids=set(tok.all_special_ids),
                                     generator=torch.Generator().manual_seed(seed))
        sel = labels != -100
        assert masked.dtype == torch.long
        assert ((masked[sel] == tok.mask_token_id) | (masked[sel] == ids[sel])).all()


# ---------------------------------------------------------------- 5. PVT projected once

def test_pvt_tokens_projected_once():
    """Reference bug: the PVT path projected its 512-d features to 768 twice (512->768, then 768->768).
    Our PVTv2-B2 encoder must map 512 -> D with exactly one Linear: tokens == proj(pooled backbone features)."""
    from torch import nn
    from snps3.config import ModelConfig
    from snps3.models.vision import VideoEncoder, token_projections
    D, E = 24, 16
    torch.manual_seed(0)
    enc = VideoEncoder(ModelConfig(vision_backbone="pvt_v2_b2", vision_pretrained=False, freeze_vision=False, embed_dim=E), D).eval()
    assert enc.num_features == 512
    # structure: outside the backbone, the only Linear layers are the single projection and the embedding MLP (D -> D -> E)
    assert token_projections(enc) == ["proj"] and (enc.proj.in_features, enc.proj.out_features) == (512, D)
    extra = [(n, m.in_features, m.out_features) for n, m in enc.named_modules()
             if isinstance(m, nn.Linear) and not n.startswith("backbone.")]
    assert sorted(extra) == [("emb_head.0", D, D), ("emb_head.2", D, E), ("proj", 512, D)], extra
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(enc) == n(enc.backbone) + 512 * D + D + n(enc.emb_head)
    # behaviour: the tokens are one affine map of the pooled 512-d features
    video, mask = torch.randn(2, 2, 1, 3, 32, 32), torch.tensor([[True, True], [True, False]])
    with torch.no_grad():
        out = enc(video, mask)
        feats = enc.clip_features(video[mask])[:, 0]                        # [M,1,512] (one token per clip) -> [M,512]
        assert feats.shape == (3, 512) and out.tokens.shape == (2, 2, D)
        torch.testing.assert_close(out.tokens[mask], enc.proj(feats), atol=1e-5, rtol=1e-5)
        assert (out.tokens[~mask] == 0).all()


# ---------------------------------------------------------------- 6. masked and raw captions truncated together

def test_masked_and_raw_captions_truncated_together(tok, monkeypatch, tmp_path):
    """Reference bug: masked and raw captions were tokenized and truncated independently, so an over-long caption's
    masked ids no longer lined up with its raw ids. Both must have the same length and label i == raw id i."""
    import snps3.data.video as video
    from snps3.data.datasets import TextSide, PretrainDataset, collate_pretrain
    L = 12
    long_cap = " ".join(["a red circle moves left and a blue square moves right"] * 6)
    assert len(tok(long_cap)["input_ids"]) > 3 * L                          # really over-long
    sig = _significant(tok)
    text = TextSide(tok, sig, {}, max_len=L, masking="mssm", mask_prob=0.3, lvwm_words=3)
    for seed in range(10):
        s = text.encode(long_cap, torch.Generator().manual_seed(seed))
        ids, masked, labels = s["input_ids"], s["masked_ids"], s["mlm_labels"]
        assert len(ids) == len(masked) == len(labels) == len(s["attention_mask"]) == L
        assert masked[0] == tok.cls_token_id and masked[-1] == tok.sep_token_id == ids[-1]  # same cut, same [SEP]
        sel = labels != -100
        assert sel.any() and torch.equal(labels[sel], ids[sel])
        assert torch.equal(masked[~sel], ids[~sel])
        assert (s["lvwm_pos"][s["lvwm_valid"]] < L).all()
    # through the dataset and collate: a long and a short caption in one batch
    monkeypatch.setattr(video, "load_clip", lambda path, n_clips, num_frames, size, *a, **kw: torch.zeros(n_clips, num_frames, 3, size, size))
    recs = [{"clip_name": "v0", "caption": long_cap}, {"clip_name": "v1", "caption": "a small red circle moves left"}]
    ds = PretrainDataset(recs, tmp_path, text, n_clips=2, num_frames=1, image_size=8, training=True, seed=0)
    b = collate_pretrain([ds[0], ds[1]])
    assert b["input_ids"].shape == b["masked_ids"].shape == b["mlm_labels"].shape == (2, L)
    sel = b["mlm_labels"] != -100
    assert sel.any(1).all() and torch.equal(b["mlm_labels"][sel], b["input_ids"][sel])
    assert torch.equal(b["masked_ids"][~sel], b["input_ids"][~sel])
    assert torch.equal(b["masked_ids"] != 0, b["attention_mask"].bool())   # same padding in both
