"""Collectives of a whole training step, NCCL-safe: every tensor handed to torch.distributed lives on the device the
job reduces on (`DistInfo.device`), and every collective goes through a door that checks it. Also: the process group is
created with `train.dist_timeout_s`, so a lost rank fails the job instead of hanging it.

This machine has no GPU, so a fake process group stands in for NCCL: a world of 2 whose other rank mirrors this one
(all_gather repeats the tensor, all_reduce doubles it). It refuses any tensor that is not on its device, as NCCL refuses
CPU tensors, and records which function handed it each tensor."""
import datetime, socket, sys

import pytest
import torch
import torch.distributed as dist

from snps3.testing import tiny_config, fake_video_batch, minilm_tokenizer

NCCL_DTYPES = {torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8, torch.int8, torch.bool}
# the functions allowed to call torch.distributed: each checks the device (or only ever sees model activations / parameters)
DOORS = {"all_reduce_sum", "gather_no_grad", "broadcast_parameters", "_barrier", "_gather_skips", "forward", "backward"}


class FakeNCCL:
    "torch.distributed collectives of a mirrored 2-rank world that, like NCCL, accept tensors on one device only."
    def __init__(self, device: torch.device):
        self.device, self.calls = torch.device(device), []

    def _see(self, op: str, *tensors):
        f = sys._getframe(2)
        while f is not None and not f.f_globals.get("__name__", "").startswith("snps3."): f = f.f_back
        caller = f.f_code.co_name if f is not None else "?"
        for t in tensors:
            self.calls.append((op, caller, t.device.type, t.dtype))
            if t.device.type != self.device.type: raise RuntimeError(f"fake NCCL: {op} of a {t.device} tensor from {caller}")

    def all_reduce(self, t, *a, **k): self._see("all_reduce", t); t.mul_(2)
    def all_gather(self, out, t, *a, **k):
        self._see("all_gather", t)
        for o in out: o.copy_(t)
    def all_gather_into_tensor(self, out, t, *a, **k): self._see("all_gather_into_tensor", t); out.copy_(t.repeat(2, *[1] * (t.dim() - 1)))
    def broadcast(self, t, *a, **k): self._see("broadcast", t)
    def barrier(self, *a, **k): self.calls.append(("barrier", "", "", None))
    def all_gather_object(self, out, obj, *a, **k): out[:] = [obj] * len(out)

    def install(self, monkeypatch):
        for name in ("all_reduce", "all_gather", "all_gather_into_tensor", "broadcast", "barrier", "all_gather_object"):
            monkeypatch.setattr(dist, name, getattr(self, name))
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
        monkeypatch.setattr(dist, "get_rank", lambda *a, **k: 0)
        for name in ("reduce_scatter_tensor", "reduce", "scatter", "gather", "all_to_all", "all_to_all_single", "send", "recv"):
            monkeypatch.setattr(dist, name, lambda *a, _n=name, **k: pytest.fail(f"unexpected collective {_n}"))


def _step_inputs(cfg, info):
    "A tiny SNP model, one micro-batch of 4 (two captions alike) and its StepContext."
    from snps3.data.text import encode_captions, choose_lvwm_words
    from snps3.models.snp import SNPModel
    from snps3.objectives import StepContext
    tok = minilm_tokenizer()
    sig = torch.zeros(len(tok), dtype=torch.bool)
    for w in ("circle", "square", "red", "blue", "moves", "left", "right"): sig[tok.convert_tokens_to_ids(w)] = True
    ctx = StepContext(cfg, info, 0, sig, tok.mask_token_id, torch.tensor(tok.all_special_ids), None,
                      clip_ids=torch.arange(4), type_ids=torch.zeros(4, dtype=torch.long))
    caps = ["a red circle moves left", "a red circle moves left", "a blue square moves right", "a blue circle moves right"]
    enc = encode_captions(tok, caps, cfg.data.max_text_len)
    pos, valid = choose_lvwm_words(enc["input_ids"], sig, cfg.loss.lvwm_words, torch.Generator().manual_seed(0))
    labels = torch.full_like(enc["input_ids"], -100); labels[:, 2] = enc["input_ids"][:, 2]       # one masked word per caption
    masked = torch.where(labels != -100, torch.full_like(labels, tok.mask_token_id), enc["input_ids"])
    batch = {**fake_video_batch(cfg, batch_size=4, seed=0), **enc, "masked_ids": masked, "mlm_labels": labels,
             "lvwm_pos": pos, "lvwm_valid": valid, "index": torch.arange(4)}
    torch.manual_seed(0)
    return SNPModel(cfg).train(), batch, ctx


def _whole_step(model, batch, ctx):
    "What `train` does with the process group in one step: start-up broadcast, objective, grad norms, NaN check, backward, log."
    from snps3.distributed import broadcast_parameters, _barrier, _gather_skips
    from snps3.objectives import loss_grad_norms, pretrain_losses, shared_parameters
    from snps3.train import _log_record, check_finite
    from snps3.data.datasets import SkipLog
    info = ctx.dist
    broadcast_parameters(model, info)
    total, losses, logs = pretrain_losses(model, batch, ctx)
    loss_grad_norms(losses, ctx.weight, shared_parameters(model), info)
    check_finite(0, losses, total, info, None)
    total.backward()
    _log_record(1, 1e-4, [{"loss": total.item()}], info)
    _barrier(info); _gather_skips(SkipLog(), info)
    return losses


ALL_ON = {"loss.cross_match": "hard_k", "loss.itm": True, "loss.mlm_text": True, "loss.swap_negatives": True, "loss.lvwm": True}


def test_every_collective_of_a_whole_step_is_on_the_collective_device(monkeypatch):
    from snps3.distributed import DistInfo
    cfg = tiny_config(**ALL_ON)
    info = DistInfo(rank=0, world_size=2, is_ddp=True, device=torch.device("cpu"))
    pg = FakeNCCL(info.device); pg.install(monkeypatch)
    model, batch, ctx = _step_inputs(cfg, info)
    losses = _whole_step(model, batch, ctx)
    assert {"vtc", "lvwm", "mlm", "mlm_text", "cross_match", "itm"} <= set(losses), sorted(losses)
    ops = {(op, caller) for op, caller, *_ in pg.calls}
    # the step really ran its collectives: scalar reductions, no-grad and with-grad gathers (and their backward), broadcast
    for need in [("all_reduce", "all_reduce_sum"), ("all_gather", "gather_no_grad"), ("all_gather", "forward"),
                 ("all_reduce", "backward"), ("broadcast", "broadcast_parameters")]:
        assert need in ops, (need, sorted(ops))
    assert {caller for _, caller in ops if caller} <= DOORS, f"a collective bypasses the device-checked doors: {sorted(ops)}"
    tensors = [c for c in pg.calls if c[0] != "barrier"]
    assert {dev for _, _, dev, _ in tensors} == {"cpu"}
    assert {dt for *_, dt in tensors} <= NCCL_DTYPES, {dt for *_, dt in tensors}


def test_a_cpu_tensor_under_a_non_cpu_collective_device_is_refused_before_the_process_group(monkeypatch):
    """The same whole step with the job's collective device 'meta' (a stand-in for cuda) while a tensor stays on the CPU:
    the scalar reductions create their tensors on DistInfo.device (the fake NCCL sees only 'meta' tensors from them), and a
    CPU tensor handed to a door is refused by snps3's own check, never reaching the process group."""
    import snps3.distributed as D
    from snps3.objectives import global_mean, StepContext
    from snps3.train import _log_record, check_finite
    info = D.DistInfo(rank=0, world_size=2, is_ddp=True, device=torch.device("meta"))
    pg = FakeNCCL(info.device); pg.install(monkeypatch)
    ctx = StepContext(tiny_config(), info, 0, torch.zeros(3, dtype=torch.bool), 0, torch.tensor([0]))
    for call in (lambda: global_mean(torch.tensor(2.0), 4, ctx), lambda: _log_record(5, 1e-3, [{"loss": 1.0}], info),
                 lambda: check_finite(0, {"a": torch.tensor(1.0)}, torch.tensor(1.0), info, None)):
        with pytest.raises(NotImplementedError):      # values of meta tensors cannot be read back: the reduction itself ran on 'meta'
            call()
    assert pg.calls and {dev for _, _, dev, _ in pg.calls} == {"meta"}
    for door in (D.all_reduce_sum, D.gather_no_grad):
        n = len(pg.calls)
        with pytest.raises(RuntimeError, match="collective on a cpu tensor"): door(torch.zeros(2), info)
        assert len(pg.calls) == n                       # refused before the process group saw it
    with pytest.raises(RuntimeError, match="fake NCCL"):    # and the fake NCCL itself refuses what slips past a door
        dist.all_reduce(torch.zeros(1))


def test_dist_timeout_reaches_init_process_group(monkeypatch):
    "setup_distributed passes train.dist_timeout_s to init_process_group: a real gloo world of 1, created with that timeout."
    from snps3.distributed import setup_distributed
    seen, real = {}, dist.init_process_group
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: seen.update(k) or real(*a, **k))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(k, v)
    try:
        info = setup_distributed(torch.device("cpu"), 42)
        assert info.is_ddp and info.world_size == 1
        assert seen["backend"] == "gloo" and seen["timeout"] == datetime.timedelta(seconds=42)
        backend = dist.distributed_c10d._get_default_group()._get_backend(torch.device("cpu"))
        assert backend.options._timeout == datetime.timedelta(seconds=42)   # the process group really waits 42 s, not 30 min
    finally:
        if dist.is_initialized(): dist.destroy_process_group()


def test_train_passes_the_configured_timeout(monkeypatch):
    "train() hands cfg.train.dist_timeout_s to setup_distributed (stopped right there, before anything is built)."
    import snps3.train as T
    class Reached(Exception): pass
    def stop(device, timeout_s): raise Reached(timeout_s)
    monkeypatch.setattr(T, "setup_distributed", stop)
    with pytest.raises(Reached) as e: T.train(tiny_config(**{"train.dist_timeout_s": 7}), progress=False)
    assert e.value.args == (7,)
