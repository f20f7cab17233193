"""DDP and FSDP2 through `snps3.distributed.wrap_model`, 2 gloo processes vs 1 process: the same losses and weights over
3 optimizer steps with gradient accumulation (no_sync / set_requires_gradient_sync) and negatives gathered with gradients;
full state dicts that load across world sizes (a 1-process checkpoint continues under 2-rank FSDP2 and DDP)."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

WORLD, ACCUM, STEPS, B = 2, 2, 3, 4          # global micro-batch B, split over WORLD ranks


def _objective(model, batch, ctx):
    "VTC with in-batch negatives gathered over ranks (with gradients), as this rank's share of the global mean."
    from snps3.losses import gather_with_grad
    t = model.encode_text(batch["input_ids"], batch["attention_mask"]).text_emb       # [b,E]
    v = gather_with_grad(model.encode_video(batch["video"], batch["clip_mask"]).video_emb)  # [B,E]
    rank = dist.get_rank() if dist.is_initialized() else 0
    target = torch.arange(len(t)) + rank * len(t)
    loss = F.cross_entropy(t @ v.T / 0.1, target)
    return loss, {"vtc": loss}, {}


def _setup():
    from snps3.models.snp import SNPModel
    from snps3.testing import fake_video_batch, tiny_config
    torch.manual_seed(0)
    cfg = tiny_config()
    model = SNPModel(cfg)
    batches = [fake_video_batch(cfg, batch_size=B, seed=s) for s in range(STEPS * ACCUM + ACCUM)]
    return model, batches


def _rows(batch, rank, world):
    n = B // world
    return {k: v[rank * n:(rank + 1) * n] for k, v in batch.items()}


def _train(wrapped, opt, batches, steps, rank, world, first=0):
    "`steps` optimizer steps of ACCUM micro-steps; the global mean loss of each step."
    from snps3.distributed import grad_sync
    out = []
    for s in range(first, first + steps):
        tot = 0.0
        for m in range(ACCUM):
            with grad_sync(wrapped, m == ACCUM - 1):
                loss = wrapped(_rows(batches[s * ACCUM + m], rank, world), None)[0]
                (loss / ACCUM).backward()
            tot += loss.detach() / ACCUM
        torch.nn.utils.clip_grad_norm_([p for p in wrapped.parameters() if p.grad is not None], 1.0)
        opt.step(); opt.zero_grad(set_to_none=True)
        if world > 1: dist.all_reduce(tot); tot /= world
        out.append(float(tot))
    return out


def _worker(rank, mode, init, out_dir):
    from snps3.distributed import full_model_state, full_optimizer_state, load_full_optimizer_state, wrap_model
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=WORLD)
    try:
        model, batches = _setup()
        wrapped = wrap_model(model, _objective, mode, WORLD)
        opt = torch.optim.SGD([p for p in wrapped.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
        losses = _train(wrapped, opt, batches, STEPS, rank, WORLD)
        sd, osd = full_model_state(wrapped), full_optimizer_state(wrapped, opt)
        # a checkpoint of the 1-process run, continued here for one step
        ref = torch.load(f"{out_dir}/one_step{STEPS}.pt")
        model2, _ = _setup(); model2.load_state_dict(ref["model"])
        wrapped2 = wrap_model(model2, _objective, mode, WORLD)
        opt2 = torch.optim.SGD([p for p in wrapped2.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
        load_full_optimizer_state(wrapped2, opt2, ref["optimizer"])
        _train(wrapped2, opt2, batches, 1, rank, WORLD, first=STEPS)
        sd2 = full_model_state(wrapped2)
        if rank == 0: torch.save({"losses": losses, "model": sd, "optimizer": osd, "continued": sd2}, f"{out_dir}/{mode}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    "The 1-process reference: losses and states after STEPS steps, and the weights after one more step."
    from snps3.distributed import wrap_model
    d = tmp_path_factory.mktemp("parallel")
    model, batches = _setup()
    obj = wrap_model(model, _objective)
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=0.1, momentum=0.9)  # SGD: Adam turns rounding noise in ~0 gradients into lr-sized steps
    losses = _train(obj, opt, batches, STEPS, 0, 1)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, d / f"one_step{STEPS}.pt")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    import copy
    osd = copy.deepcopy(opt.state_dict())                                            # state_dict() shares the live buffers
    _train(obj, opt, batches, 1, 0, 1, first=STEPS)
    return d, losses, state, osd, model.state_dict()


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_equal_one_process(one_process, tmp_path, mode):
    d, losses, state, osd, continued = one_process
    mp.spawn(_worker, args=(mode, str(tmp_path / "init"), str(d)), nprocs=WORLD, join=True)
    got = torch.load(d / f"{mode}.pt")
    for a, b in zip(got["losses"], losses): assert abs(a - b) < 1e-5, (got["losses"], losses)
    assert got["model"].keys() == state.keys()
    for k in state: torch.testing.assert_close(got["model"][k], state[k], atol=1e-5, rtol=1e-4, msg=k)
    assert got["optimizer"]["param_groups"] == osd["param_groups"]
    for i, st in osd["state"].items():
        torch.testing.assert_close(got["optimizer"]["state"][i]["momentum_buffer"], st["momentum_buffer"], atol=1e-5, rtol=1e-4)
    for k in continued: torch.testing.assert_close(got["continued"][k], continued[k], atol=1e-5, rtol=1e-4, msg=k)
