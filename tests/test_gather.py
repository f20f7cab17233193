"""2-process gloo check of `gather_with_grad`: DDP-averaged gradients of per-rank losses equal single-process full-batch gradients."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from snps3.losses import gather_with_grad, lvwm_loss, vtc_loss

WORLD, B, IN, E, K, TAU = 2, 3, 5, 4, 2, 0.2


def _setup():
    "Full-batch inputs and a shared pair of linear encoders (identical on every rank: fixed seed)."
    g = torch.Generator().manual_seed(0)
    xt, xv, xw = (torch.randn(WORLD * B, IN, generator=g), torch.randn(WORLD * B, IN, generator=g),
                  torch.randn(WORLD * B, K, IN, generator=g))
    valid = torch.ones(WORLD * B, K, dtype=torch.bool); valid[1, 1] = False; valid[4] = False  # a row without words
    torch.manual_seed(1)
    text_enc, video_enc = torch.nn.Linear(IN, E), torch.nn.Linear(IN, E)
    return xt, xv, xw, valid, text_enc, video_enc


def _losses(text_enc, video_enc, xt, xv, xw, valid, rows, gather, text_offset):
    "VTC and LVWM of the caption rows `rows` against the (gathered) batch, and LVWM's count of usable captions."
    t = gather(F.normalize(text_enc(xt[rows]), dim=-1))                                # [Bt,E]
    v = gather(F.normalize(video_enc(xv[rows]), dim=-1))                               # [Bv,E]
    w = gather(text_enc(xw[rows]))                                                     # [Bt,K,E]
    wv = gather(valid[rows])
    pos = torch.arange(text_offset, text_offset + len(rows))
    vtc, _ = vtc_loss(t, v, pos, TAU, text_offset=text_offset)
    lvwm, logs = lvwm_loss(w, wv, v, pos, TAU, text_offset=text_offset)
    return vtc, lvwm, len(rows) - logs["lvwm_skipped"]


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        xt, xv, xw, valid, text_enc, video_enc = _setup()
        rows = torch.arange(rank * B, (rank + 1) * B)
        vtc, lvwm, n_usable = _losses(text_enc, video_enc, xt, xv, xw, valid, rows,
                                      gather_with_grad, rank * B)
        n_global = torch.tensor(n_usable); dist.all_reduce(n_global)
        loss = vtc + lvwm * (n_usable * WORLD / n_global)                              # LVWM skips rows: weight by usable count
        loss.backward()
        params = [*text_enc.parameters(), *video_enc.parameters()]
        grads = [p.grad.clone() for p in params]
        for gr in grads: dist.all_reduce(gr); gr /= WORLD                              # what DDP does
        mean_loss = loss.detach().clone(); dist.all_reduce(mean_loss); mean_loss /= WORLD
        torch.save({"loss": mean_loss, "grads": grads}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gather_with_grad_matches_full_batch(tmp_path):
    "VTC (gathered texts + text_offset) and LVWM (weighted by usable captions) on 2 ranks × 3 rows == one process × 6 rows."
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    xt, xv, xw, valid, text_enc, video_enc = _setup()
    vtc, lvwm, _ = _losses(text_enc, video_enc, xt, xv, xw, valid, torch.arange(WORLD * B), lambda x: x, 0)
    full = vtc + lvwm
    full.backward()
    expected = [p.grad for p in (*text_enc.parameters(), *video_enc.parameters())]
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(got["loss"], full.detach())
        for g, e in zip(got["grads"], expected): torch.testing.assert_close(g, e)


def test_identity_without_process_group():
    x = torch.randn(2, 3, requires_grad=True)
    assert gather_with_grad(x) is x
