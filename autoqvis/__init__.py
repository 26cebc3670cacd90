"""autoqvis: unsupervised video instance segmentation with quality-guided self-training (AutoQ-VIS).

Pure PyTorch; runs on CPU and GPU. See README.md for the command line, and :mod:`autoqvis.api` for the
Python entry points.
"""

__version__ = "0.1.0"
