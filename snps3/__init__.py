__version__ = "0.1.0"


def load(run_or_checkpoint, device: str = "auto"):
    "A trained model, ready to use (`snps3.api.load`): eval mode, on `device`, with its preprocessing."
    from .api import load as _load   # imported on first use: `import snps3` stays light
    return _load(run_or_checkpoint, device)
