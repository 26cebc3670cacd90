"""autoqvis: unsupervised video instance segmentation with quality-guided self-training (AutoQ-VIS).

Pure PyTorch; runs on CPU and GPU. See README.md for the command line, and :mod:`autoqvis.api` for the
Python entry points.
"""

__version__ = "0.1.0"


def load_model(path_or_preset, preset: str = "paper_r50", device: str = "cpu"):
    """See :func:`autoqvis.api.load_model`."""
    from autoqvis.api import load_model as _load

    return _load(path_or_preset, preset=preset, device=device)
