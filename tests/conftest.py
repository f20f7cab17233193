"""Shared fixtures: one tiny embedded benchmark per test session (real mp4 files, generated in seconds)."""
import os
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory):
    "A tiny synthetic benchmark directory (videos, images, all annotation files, manifest.json)."
    from snps3.data.synthetic import make_synthetic
    out = tmp_path_factory.mktemp("bench") / "synthetic"
    make_synthetic(out, seed=0, size="tiny")
    return out
