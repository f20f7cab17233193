"""loss.reverse_negatives: each caption's own clip, its tokens in reverse time order, is one more negative of the cross
head's matching loss (the same objects, the opposite motion)."""
import torch

from helpers import metrics, pretrain_args, run_cli


def matching(cfg, model, batch):
    from snps3.distributed import DistInfo
    from snps3.objectives import StepContext, matching_terms
    vis = model.encode_video(batch["video"], batch["clip_mask"]); txt = model.encode_text(batch["input_ids"], batch["attention_mask"])
    ctx = StepContext(cfg, DistInfo(), 0, None, 0, None)
    return matching_terms(model, batch, vis, txt, vis.video_emb, torch.arange(batch["input_ids"].shape[0]), ctx)[0]


def test_cross_match_known_answer_with_the_reversed_clip():
    """With hard_k = B - 1 every other clip is a negative, so the loss is known: mean over captions of
    logsumexp(own, the 3 other clips, own clip reversed) - own, every score from the cross pass directly."""
    from snps3.config import load_config
    from snps3.models.snp import SNPModel
    from snps3.objectives import reverse_clips
    from snps3.testing import fake_video_batch
    over = ["loss.cross_match=hard_k", "loss.hard_k=3", "loss.itm=false", "loss.cross_match_v2t=false", "model.dropout=0"]
    cfg = load_config("tiny_cpu", over + ["loss.reverse_negatives=true"])
    torch.manual_seed(0)
    model = SNPModel(cfg).eval()
    batch = fake_video_batch(cfg, batch_size=4)                               # the last video has a padded clip
    with torch.no_grad():
        got = matching(cfg, model, batch)["cross_match"]
        plain = matching(load_config("tiny_cpu", over), model, batch)["cross_match"]
        vis = model.encode_video(batch["video"], batch["clip_mask"])
        ids, att, B = batch["input_ids"], batch["attention_mask"], 4
        score = lambda t, v, tok: model.match_score(model.cross(ids[t], att[t], tok[v], vis.mask[v]).pooled).float()
        S = torch.stack([score(torch.arange(B), torch.full((B,), j), vis.tokens) for j in range(B)], 1)   # [B,B] caption x clip
        rev = score(torch.arange(B), torch.arange(B), reverse_clips(vis.tokens, vis.mask))              # [B] own clip reversed
    own = S.diagonal()
    want = (torch.cat([S, rev[:, None]], 1).logsumexp(1) - own).mean()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    torch.testing.assert_close(plain, (S.logsumexp(1) - own).mean(), atol=1e-4, rtol=0)   # without it: the 4-way loss
    assert got > plain + 1e-3                                                   # one more negative always raises the loss


def test_tiny_run_and_clear_errors(tiny_bench, tmp_path):
    r = run_cli(pretrain_args(tiny_bench, tmp_path / "run", "train.max_steps=2", "loss.reverse_negatives=true"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert all("loss/cross_match" in x for x in metrics(tmp_path / "run"))
    grid = run_cli(pretrain_args(tiny_bench, tmp_path / "grid", "loss.reverse_negatives=true", "model.visual_tokens=grid2"))
    assert grid.returncode != 0 and "loss.reverse_negatives" in grid.stderr and "visual_tokens=clip" in grid.stderr
    pairs = run_cli(pretrain_args(tiny_bench, tmp_path / "pairs", "loss.reverse_negatives=true", "loss.cross_match=all_pairs"))
    assert pairs.returncode != 0 and "hard_k" in pairs.stderr
