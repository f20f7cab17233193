"""The data_prep diagnostics (early_stage_probe, cross_diagnostics, background_swap): their measurements on inputs whose answers are known by hand."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    "A data_prep script as a module (they are scripts, not a package)."
    spec = importlib.util.spec_from_file_location(f"data_prep_{name}", ROOT / "data_prep" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def load_probe(): return load_script("early_stage_probe")
def load_diagnostics(): return load_script("cross_diagnostics")


def test_between_share_by_hand():
    # class means 1 and 11 around the grand mean 6: between 2*25 + 2*25 = 100 of a total 36+16+16+36 = 104
    X, y = torch.tensor([[0.], [2.], [10.], [12.]]), torch.tensor([0, 0, 1, 1])
    assert load_probe().between_share(X, y) == pytest.approx(100 * 100 / 104)


def test_probe_accuracy_separable_and_label_free():
    probe = load_probe()
    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 4
    train = torch.arange(40) < 24
    X = torch.randn(40, 6, generator=g) * 0.1
    X[torch.arange(40), y] += 3.0                      # class c lights up dimension c: linearly separable
    assert probe.probe_accuracy(X, y, train, 0) == 100.0
    noise = torch.randn(40, 6, generator=g)            # no signal: at most a few lucky hits of 16 test clips
    assert probe.probe_accuracy(noise, y, train, 0) < 60.0


def test_clip_mean_skips_padded_clips():
    # video 0: clips 1, 2, 3 -> 2; video 1: clips 4, 8 real and a padded clip that must not count -> 6
    X = torch.tensor([[[1.], [2.], [3.]], [[4.], [8.], [100.]]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert load_probe().clip_mean(X, mask).tolist() == [[2.0], [6.0]]


def test_count_shift_shares_by_hand():
    diag = load_diagnostics()
    # one caption (own clip 0); clips 1, 2 hold one object like clip 0, clip 3 holds two. Batches of 4 hold every clip.
    counts = torch.tensor([1, 1, 1, 2])
    sim = torch.tensor([[1.0, 0.0, 0.0, 0.0]])                 # equal sims for the negatives: the draw is uniform
    drawn, uniform = diag.count_shift_shares(sim, [0], counts, 0.05, 4, draws=3)
    assert drawn == pytest.approx(100 / 3) and uniform == pytest.approx(100 / 3)
    sim = torch.tensor([[1.0, 0.5, 0.5, 0.0]])                 # the two-object clip far below: e^-10 of the mass
    drawn, _ = diag.count_shift_shares(sim, [0], counts, 0.05, 4, draws=3)
    assert drawn == pytest.approx(100 / (1 + 2 * math.exp(10)), rel=1e-4)


def test_wrong_pick_spread_by_hand():
    diag = load_diagnostics()
    # captions 0..4 belong to clips 0..4; picks: right, clip 7, clip 7, clip 7, clip 2 -> 4 wrong on 2 clips, clip 7 takes 3
    assert diag.wrong_pick_spread([0, 7, 7, 7, 2], [0, 1, 2, 3, 4]) == (4, 2, 3)
    assert diag.wrong_pick_spread([0, 1], [0, 1]) == (0, 0, 0)


def test_scene_change_names_count_and_nesting():
    diag = load_diagnostics()
    red = dict(shape="circle", colour="red", size="small", action="left")
    blue = dict(red, colour="blue")
    assert diag.scene_change({"objects": [red]}, {"objects": [blue]}) == "colour"
    assert diag.scene_change({"objects": [red]}, {"objects": [red, blue]}) == "count 1->2 nested"
    assert diag.scene_change({"objects": [red, blue]}, {"objects": [dict(red, shape="star")]}) == "count 2->1"


def load_background_swap(): return load_script("background_swap")


def test_rerank_wins_by_rank_and_change_by_hand():
    diag = load_diagnostics()
    # 2 captions, 4 negatives each in dual rank order; caption 0's own score 1.0 beats ranks 2 and 4, caption 1's 0.0 beats rank 3 only
    own = torch.tensor([1.0, 0.0])
    neg = torch.tensor([[2.0, 0.5, 1.0, -1.0],    # rank 3 ties the own clip: a tie is not a win
                        [1.0, 0.5, -0.5, 0.1]])
    got = diag.wins_by_bucket(own, neg, buckets=((1, 2), (3, 4), (5, 8)))
    assert got == {(1, 2): pytest.approx(100 * 1 / 4), (3, 4): pytest.approx(100 * 2 / 4)}   # (5, 8) lies past K = 4: left out
    changes = [["colour", "count", "colour", "2 attributes"], ["count", "colour", "count", "action"]]
    by = diag.wins_by_change(own, neg, changes)
    assert by["colour"] == (3, 0.0) and by["count"] == (3, pytest.approx(100 * 2 / 3))   # colour: ranks 1, 3 of caption 0, 2 of 1: all lost
    assert by["2 attributes"] == (1, 100.0) and by["action"] == (1, 0.0)
    assert [diag.change_kind(c) for c in ("count 1->2 nested", "colour", "colour+action", "shape+size+action")] == \
        ["count", "colour", "2 attributes", "3 attributes"]


def test_rerank_candidates_leave_out_the_own_clip():
    diag = load_diagnostics()
    sim = torch.tensor([[0.9, 0.1, 0.5, 0.7],
                        [0.2, 0.8, 0.6, 0.1]])
    assert diag.rerank_candidates(sim, [0, 2], 2).tolist() == [[3, 2], [1, 0]]
    assert diag.rerank_candidates(sim, [0, 2], 10).shape == (2, 3)                  # at most every other clip


def test_foreign_backgrounds_gives_every_clip_another_photo():
    bs = load_background_swap()
    photos = ["grass", "grass", "rocket", "rocket", "camera"]
    for seed in range(5):
        perm = bs.foreign_backgrounds(photos, seed)
        assert sorted(perm) == list(range(len(photos)))
        assert all(photos[perm[i]] != photos[i] for i in range(len(photos)))
    with pytest.raises(ValueError, match="more than half"):
        bs.foreign_backgrounds(["grass", "grass", "grass", "rocket"])


def test_background_reliance_and_replaced_own_r1_by_hand():
    bs = load_background_swap()
    # drops 1 and 0, spreads 1 and 2: (1/1 + 0/2) / 2 = 0.5
    assert bs.background_reliance(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 4.0]), torch.tensor([1.0, 2.0])) == pytest.approx(0.5)
    # row 0: own 3 -> 0.5 < 1, wrong; row 1: own 2 -> 2.5 > 0, right: 50 %
    scores = torch.tensor([[3.0, 1.0], [0.0, 2.0]])
    assert bs.r1_with_replaced_own(scores, torch.tensor([0, 1]), torch.tensor([0.5, 2.5])) == 50.0
    assert scores[0, 0] == 3.0   # the caller's matrix is left as it was


def test_blend_and_top1_changes_by_hand():
    diag = load_diagnostics()
    # dual/τ + α × head: cosines 0.5 and 0.1 at τ 0.05 are logits 10 and 2; α 0.5 adds half the head's logits
    torch.testing.assert_close(diag.blend(torch.tensor([0.5, 0.1]), torch.tensor([-4.0, 6.0]), 0.05, 0.5), torch.tensor([8.0, 5.0]))
    red = {"shape": "circle", "colour": "red", "size": "small", "action": "left"}
    scenes = {"a": {"objects": [red]}, "b": {"objects": [dict(red, action="right")]}, "c": {"objects": [dict(red, colour="blue", action="up")]}}
    # captions of clips a, a, b: the first picks its own clip, the second b (action), the third c (colour + action vs b)
    ch = diag.top1_changes([0, 1, 2], [0, 0, 1], ["a", "b", "c"], scenes)
    assert ch == {"action": 1, "colour+action": 1}
