"""autoqvis: unsupervised video instance segmentation with quality-guided self-training (AutoQ-VIS).

Pure PyTorch; runs on CPU and GPU. See README.md for the command line, and :mod:`autoqvis.api` for the
Python entry points.
"""

__version__ = "0.1.0"


def load_model(weights, model=None, device="cpu"):
    """See :func:`autoqvis.model.build.load_model`."""
    from autoqvis.model.build import load_model as _load

    return _load(weights, model=model, device=device)


def segment(model, video, inference=None, **settings):
    """See :func:`autoqvis.api.segment`."""
    from autoqvis.api import segment as _segment

    return _segment(model, video, inference, **settings)
