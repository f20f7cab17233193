"""data_prep/early_stage_probe.py: its two measurements on tensors whose answers are known by hand."""
import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_probe():
    spec = importlib.util.spec_from_file_location("data_prep_early_stage_probe", ROOT / "data_prep" / "early_stage_probe.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


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
