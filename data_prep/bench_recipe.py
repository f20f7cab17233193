"""Step time of the pre-training recipe's variants, measured in one run (round-robin, so machine noise hits all alike).

    python data_prep/bench_recipe.py [--data data/synthetic] [--config demo_cpu] [--steps 4] [--threads 1] [--json OUT]

Rows (all on the same pre-loaded batches of the real `BatchStream`, same model init):
  * `passes as before`: the pass structure of the recipe before issue 8 (cross matching caption→clip only, ITM with a
    sampled false caption per clip, no gradient diagnostics);
  * `default`: the shipped demo recipe (adds the clip→caption matching term, which reuses ITM's false-caption pass);
  * `itm_negatives=clips`: ITM reuses the cross-matching negative clips, one cross pass fewer per step;
  * `grad-norm step`: a step that also measures `grad/<loss>` (one extra backward per loss; with
    `train.grad_norm_every=N` it runs on every N-th step).
Each row prints the median seconds per optimizer step and its ratio to the first row, plus the BERT sequences per step.
"""
import argparse, json, os, statistics, sys, tempfile, time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch

ROWS = {
    "passes as before": ["loss.cross_match_v2t=false", "loss.itm_negatives=captions", "loss.grad_balance=false"],
    "default": [],
    "itm_negatives=clips": ["loss.itm_negatives=clips", "loss.cross_match_v2t=false"],
    "grad-norm step": ["_gradnorm"],
}


def make_cfg(config: str, data: Path, overrides: list[str]):
    from snps3.config import load_config
    return load_config(config, overrides=[f"data.root={data}", "train.device=cpu", "train.eval_every=0", *[o for o in overrides if not o.startswith("_")]])


def count_cross(model) -> list:
    "Wrap model.cross to count the sequences each step sends through it."
    seen, orig = [], model.cross
    def counted(*a, **k):
        seen.append(a[0].shape[0]); return orig(*a, **k)
    model.cross = counted
    return seen


def one_step(model, opt, batch, ctx, step: int, gradnorm: bool) -> None:
    "One optimizer step as `train()` runs it (grad_accum 1, fp32, one process), optionally with the grad/<loss> measurement."
    from snps3.objectives import pretrain_losses, loss_grad_norms, shared_parameters
    from snps3.train import get_lr
    tc = ctx.cfg.train
    for g in opt.param_groups: g["lr"] = get_lr(step, tc) * g.get("lr_mult", 1.0)
    ctx.step = step
    total, losses, _ = pretrain_losses(model, batch, ctx)
    if gradnorm: loss_grad_norms(losses, ctx.weight, shared_parameters(model))
    total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
    opt.step(); opt.zero_grad(set_to_none=True)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/synthetic"))
    ap.add_argument("--config", default="demo_cpu")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per row (after one warm-up step each)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is robust on a shared machine)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if not (a.data / "pretrain.jsonl").exists(): sys.exit(f"{a.data}/pretrain.jsonl not found: python data_prep/make_synthetic.py --out {a.data}")
    from snps3.core import seed_everything
    from snps3.models.snp import SNPModel
    from snps3.distributed import setup_distributed
    from snps3.objectives import StepContext
    from snps3.train import param_groups, build_pretrain_data, BatchStream, fresh_modules
    setups = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, ov in ROWS.items():
            cfg = make_cfg(a.config, a.data, ov)
            seed_everything(0)
            model = SNPModel(cfg).train()
            opt = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay, fresh_modules(model, False), cfg.train.head_lr_mult), lr=cfg.train.lr)
            data = build_pretrain_data(cfg, model, Path(tmp), setup_distributed(torch.device("cpu")))
            if not setups: stream = BatchStream(data); batches = [stream.next() for _ in range(a.steps + 1)]
            tok = data.text.tokenizer
            ctx = StepContext(cfg, setup_distributed(torch.device("cpu")), 0, data.text.significant, tok.mask_token_id,
                              torch.tensor(tok.all_special_ids), None, data.clip_ids)
            setups[name] = dict(model=model, opt=opt, ctx=ctx, gradnorm="_gradnorm" in ov, seqs=count_cross(model), times=[])
        for name, s in setups.items():                                          # warm-up (and the sequence count)
            one_step(s["model"], s["opt"], batches[0], s["ctx"], 0, s["gradnorm"])
            s["bert_seqs"] = sum(s["seqs"]) + 2 * batches[0]["input_ids"].shape[0]   # cross passes + text and masked-text passes
        for i in range(1, a.steps + 1):                                         # round-robin timing
            for name, s in setups.items():
                t0 = time.perf_counter(); one_step(s["model"], s["opt"], batches[i], s["ctx"], i, s["gradnorm"])
                s["times"].append(time.perf_counter() - t0)
    base = statistics.median(next(iter(setups.values()))["times"])
    out = {}
    print(f"{'row':24s} {'s/step':>8s} {'ratio':>7s} {'BERT seqs/step':>15s}")
    for name, s in setups.items():
        med = statistics.median(s["times"])
        out[name] = {"s_per_step": med, "ratio": med / base, "bert_seqs": s["bert_seqs"], "times": s["times"]}
        print(f"{name:24s} {med:8.2f} {med / base:7.2f} {s['bert_seqs']:15d}")
    if a.json: a.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
