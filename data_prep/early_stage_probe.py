"""Which frozen backbone features carry colour, shape and motion? Linear probes on the embedded benchmark's single-object
clips, the reason for `model.early_stage`.

    python data_prep/early_stage_probe.py data/synthetic [--config demo_cpu] [--stages 1 2 3 4] [--seed 0]

Each clip (the config's n_clips × num_frames at its image_size, preprocessed as training does) goes through the frozen
backbone once. Per feature kind, the clip's vector is the mean over its frames of:
- `final avg`: the final features averaged over space (what one visual token per clip carries by default);
- `stage i avg` / `stage i max`: stage i's map averaged / max-pooled over space;
- `stage i max, LN`: the max, LayerNormed over channels (what `model.early_stage: i` appends to every token).
- `stage i motion`: how far each channel's spatial soft-argmax moved since the previous clip (what `model.early_motion`
  appends; its mean over the clips is the net displacement).
A softmax-regression probe (Adam, 300 steps, L2 1e-3 and 1e-2, the better test figure kept) is trained on the
pre-training split's clips and tested on the others. The second figure is the between-class share of the variance (%).
Motion is the action word, probed twice: from the clip's mean vector (what the tokens' mean, the dual score's input,
carries) and from the clips' vectors in time order, concatenated (what a reader of the token sequence could see)."""
import argparse, json, os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
import torch.nn.functional as F

from snps3.config import load_config
from snps3.data.datasets import ClipDataset, collate_clips
from snps3.models.vision import VideoEncoder, clip_motion, early_centroids, early_features


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the embedded benchmark's root (with scenes.jsonl)")
    ap.add_argument("--config", default="demo_cpu", help="config whose model.* / data.* decide backbone and clip sampling")
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3, 4], help="timm feature_info indices to probe")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


@torch.no_grad()
def clip_vectors(enc: VideoEncoder, loader, stages: list[int], n: int, n_clips: int) -> tuple[dict, torch.Tensor]:
    "{feature kind: [n,N,C] per-clip vectors in time order (mean over each clip's frames; zero for padded clips)}, clip mask [n,N]."
    out, clip_mask = {}, torch.zeros(n, n_clips, dtype=torch.bool)
    for b in loader:
        mask = b["clip_mask"]; B, N, T = b["video"].shape[:3]; clip_mask[b["index"], :N] = mask
        frames = b["video"][mask].flatten(0, 1)                                # [M*T,3,S,S] real clips only
        final, maps = enc.backbone.forward_intermediates(frames, indices=stages)
        kinds = {"final avg": final.mean((2, 3))}
        for i, m in zip(stages, maps):
            kinds.update({f"stage {i} avg": m.mean((2, 3)), f"stage {i} max": m.amax((2, 3)),
                          f"stage {i} max, LN": early_features(m, 0, 1.0)[:, 0],   # the model's own code path, unscaled
                          f"stage {i} motion": early_centroids(m)})                # positions here, motion below
        for k, v in kinds.items():
            per_clip = v.new_zeros(B, N, v.shape[-1]); per_clip[mask] = v.view(-1, T, v.shape[-1]).mean(1)   # [B,N,C]
            if k.endswith("motion"): per_clip = clip_motion(per_clip, mask)
            out.setdefault(k, torch.zeros(n, n_clips, v.shape[-1]))[b["index"], :N] = per_clip
    return out, clip_mask


def clip_mean(X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    "Mean over each video's real clips: [n,N,C] -> [n,C]."
    return (X * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


def probe_accuracy(X: torch.Tensor, y: torch.Tensor, train: torch.Tensor, seed: int) -> float:
    "Test accuracy (%) of a linear softmax probe on standardised features, the better of two L2 weights."
    X = (X - X[train].mean(0)) / (X[train].std(0) + 1e-6); k, best = int(y.max()) + 1, 0.0
    for wd in (1e-3, 1e-2):
        torch.manual_seed(seed)
        W = torch.zeros(X.shape[1], k, requires_grad=True); c = torch.zeros(k, requires_grad=True)
        opt = torch.optim.Adam([W, c], 1e-2)
        for _ in range(300):
            loss = F.cross_entropy(X[train] @ W + c, y[train]) + wd * W.pow(2).sum(); opt.zero_grad(); loss.backward(); opt.step()
        best = max(best, ((X[~train] @ W + c).argmax(1) == y[~train]).float().mean().item() * 100)
    return best


def between_share(X: torch.Tensor, y: torch.Tensor) -> float:
    "Share (%) of the features' total variance that lies between the classes' means."
    mu = X.mean(0); total = (X - mu).pow(2).sum()
    return 100 * float(sum((y == c).sum() * (X[y == c].mean(0) - mu).pow(2).sum() for c in y.unique()) / total)


def main(argv=None):
    a = parse_args(argv)
    cfg = load_config(a.config, [f"data.root={a.data}"]); d = cfg.data
    enc = VideoEncoder(cfg.model, 8).eval()
    path = a.data / "scenes.jsonl"
    if not path.is_file(): raise SystemExit(f"{path}: no scenes.jsonl (make it with data_prep/make_synthetic.py)")
    scenes = [json.loads(l) for l in path.open()]
    scenes = [s for s in scenes if s["clip_name"].endswith(".mp4") and len(s["objects"]) == 1]
    ds = ClipDataset([s["clip_name"] for s in scenes], d.root, d.n_clips, d.num_frames, d.image_size, enc.mean, enc.std, True, None, False)
    vecs, mask = clip_vectors(enc, torch.utils.data.DataLoader(ds, batch_size=32, collate_fn=collate_clips), a.stages, len(scenes), d.n_clips)
    train = torch.tensor([s["split"] == "pretrain" for s in scenes])
    print(f"{len(scenes)} single-object clips: {int(train.sum())} to train the probes, {int((~train).sum())} to test them")
    chance = {k: f"{100 / len({s['objects'][0][k] for s in scenes}):.1f}" for k in ("colour", "shape", "action")}
    print(f"| features | dims | colour (chance {chance['colour']}) | shape (chance {chance['shape']}) | action, clips' mean (chance {chance['action']}) | action, clips in order |")
    print("|---|---|---|---|---|---|")
    labels = {}
    for k in ("colour", "shape", "action"):
        vals = sorted({s["objects"][0][k] for s in scenes}); labels[k] = torch.tensor([vals.index(s["objects"][0][k]) for s in scenes])
    for kind, X in vecs.items():
        cols = [(clip_mean(X, mask), labels[k]) for k in ("colour", "shape", "action")] + [(X.flatten(1), labels["action"])]
        cells = [f"{probe_accuracy(Z, y, train, a.seed):.1f} ({between_share(Z, y):.1f})" for Z, y in cols]
        print(f"| {kind} | {X.shape[-1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
