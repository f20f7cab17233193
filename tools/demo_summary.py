"""Summarise the demo's evaluations: `python tools/demo_summary.py runs --out reports/demo_results.md`.

Reads `<runs>/eval_*/results.json` (the DESIGN.md contract) and prints / writes a markdown table with the split, seed,
config hash and the headline metrics of each evaluation, plus the pre-training run's steps and wall time."""
import argparse, json
from pathlib import Path

HEADLINE = {"retrieval": ["dual/t2v/R@1", "dual/t2v/R@5", "dual/t2v/R@10", "dual/t2v/MedR", "cross/t2v/R@1", "cross/t2v/R@5",
                          "cross/t2v/MedR", "cross/v2t/R@1", "fused/t2v/R@1", "fused/t2v/R@5", "head/t2v/R@1", "cross-dual/t2v/R@1", "cross-dual/t2v/R@1_lo95", "cross-dual/t2v/R@1_hi95", "pairs/dual/all", "pairs/cross/all", "pairs/cross/action", "rerank_k",
                          "n_clips", "n_captions"],
            "qa": ["acc", "oov_share", "n_questions"], "mc": ["acc", "dual_acc", "fused_acc", "head_acc", "chance", "n_questions"]}


def rows(runs: Path) -> list[dict]:
    "One row per evaluation results.json under `runs`."
    out = []
    for p in sorted(runs.glob("eval_*/results.json")):
        r = json.loads(p.read_text())
        m = {k: r["metrics"][k] for k in HEADLINE.get(r["task"], []) if k in r["metrics"]}
        out.append({"run": p.parent.name, "task": r["task"], "dataset": r["dataset"], "split": r["split"], "seed": r["seed"],
                    "checkpoint": Path(r.get("checkpoint", "")).parent.parent.name, "config_hash": r["config_hash"][:10], "metrics": m})
    return out


def markdown(rs: list[dict], runs: Path) -> str:
    "A markdown table of the rows (metrics as `name value` pairs)."
    lines = ["| evaluation | task | from | dataset / split | seed | config | metrics |", "|---|---|---|---|---|---|---|"]
    for r in rs:
        ms = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in r["metrics"].items())
        lines.append(f"| {r['run']} | {r['task']} | {r['checkpoint']} | {r['dataset']} / {r['split']} | {r['seed']} | `{r['config_hash']}` | {ms} |")
    s = runs / "pretrain" / "summary.json"
    if s.exists():
        s = json.loads(s.read_text())
        lines.append(f"\nPre-training: {s.get('steps')} steps this session, {s.get('wall_time_s', 0):.0f} s, {s.get('samples_per_s', 0):.1f} samples/s.")
    lines += pretrain_losses(runs / "pretrain")
    return "\n".join(lines) + "\n"


def pretrain_losses(run: Path, last: int = 3) -> list[str]:
    """Markdown lines: each pre-training loss at the first logged step and at the end (mean of the last `last` logged
    steps), against the chance value of the matching losses: ln(hard_k + 1) for cross matching, ln 2 for ITM."""
    import math, yaml
    m, c = run / "metrics.jsonl", run / "config.yaml"
    if not m.exists(): return []
    recs = [r for r in (json.loads(l) for l in m.read_text().splitlines() if l.strip()) if "loss" in r]
    if not recs: return []
    cfg = yaml.safe_load(c.read_text()) if c.exists() else {}
    k = cfg.get("loss", {}).get("hard_k", 3)
    chance = {"loss/cross_match": math.log(k + 1), "loss/cross_match_v2t": math.log(2), "loss/itm": math.log(2)}
    out = ["", f"Pre-training losses (first logged step {recs[0]['step']}, end = mean of the last {last} logged steps up to step {recs[-1]['step']}):", "",
           "| loss | first | end | chance | end vs chance |", "|---|---|---|---|---|"]
    for key in sorted(k for k in recs[-1] if k.startswith("loss/")):
        end = sum(r.get(key, float("nan")) for r in recs[-last:]) / len(recs[-last:])
        ch = chance.get(key)
        rel = f"{100 * (end / ch - 1):+.1f} %" if ch else ""
        out.append(f"| {key} | {recs[0].get(key, float('nan')):.4f} | {end:.4f} | {f'{ch:.4f}' if ch else ''} | {rel} |")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="directory holding the demo's run directories (default layout of `make demo`)")
    ap.add_argument("--out", type=Path, help="also write the table here")
    a = ap.parse_args()
    rs = rows(a.runs)
    if not rs: raise SystemExit(f"no {a.runs}/eval_*/results.json found: run `make demo` first")
    text = markdown(rs, a.runs)
    print(text)
    if a.out: a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(text)
