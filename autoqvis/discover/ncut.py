"""Normalised cut on a patch graph: the building blocks of MaskCut (CutLER ``maskcut.py``, TokenCut).

Legend: ``D`` feature channels, ``N = h*w`` patches (row-major), ``(h, w)`` patch grid.

The graph is the official binarised one: ``W_ij = 1`` if the cosine similarity of patches i and j is
``> tau``, else ``eps``; ``d = W.sum(1)``. The cut is the second-smallest eigenvector of the generalised
problem ``(D - W) x = lambda D x``, split at its mean. Two solvers:

- ``dense``: ``scipy.linalg.eigh(D - W, D, subset_by_index=[1, 2])`` on the same dense float64 matrices
  as the official code, so it reproduces its eigenvector *and its sign* (LAPACK's choice), which the
  corner/seed rule depends on. O(N^3): about 3 s per cut at N = 3600 (480 px, patch 8) on 2 cores.
- ``arpack``: the equivalent symmetric problem ``D^-1/2 W D^-1/2 y = (1 - lambda) y`` with the known top
  eigenvector ``D^1/2 1`` deflated, solved by ``scipy.sparse.linalg.eigsh`` with dense mat-vecs (~0.1 s
  at N = 3600). Same eigenvector to solver precision, returned with the same ``x^T D x = 1`` scaling; its
  sign is fixed by making the largest-magnitude entry positive.

``auto`` uses ``dense`` up to :data:`DENSE_MAX_NODES` patches and ``arpack`` above.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import scipy
import scipy.linalg
import scipy.linalg.blas
import scipy.sparse.linalg
import torch
import torch.nn.functional as F
from scipy import ndimage

from autoqvis.config import DiscoveryConfig

__all__ = [
    "DENSE_MAX_NODES",
    "Solver",
    "affinity_matrix",
    "count_foreground_corners",
    "foreground_and_seed",
    "mask_iou",
    "second_smallest_eigenvector",
    "seed_component",
    "single_threaded_blas",
    "split_at_mean",
]

Solver = Literal["auto", "dense", "arpack"]
DENSE_MAX_NODES = 1024  # auto: the exact official solver up to 32x32 patches


def affinity_matrix(feats: torch.Tensor, tau: float, eps: float = DiscoveryConfig.eps) -> np.ndarray:
    """(D, N) features -> (N, N) float64 binarised cosine affinity (1 where cos > tau, else eps).

    The cosine is computed in the features' dtype on their device (float32 for the first cut, float64
    after MaskCut's float64 painting mask), as the official code does.
    """
    if feats.ndim != 2:
        raise ValueError(f"feats must be (D, N), got {tuple(feats.shape)}")
    unit = F.normalize(feats, p=2, dim=0)
    cos = (unit.transpose(0, 1) @ unit).cpu().numpy()  # (N, N)
    return np.where(cos > tau, 1.0, eps)


def second_smallest_eigenvector(
    affinity: np.ndarray, solver: Solver = DiscoveryConfig.eigensolver
) -> np.ndarray:
    """(N, N) affinity -> (N,) float64 generalised eigenvector of the second-smallest eigenvalue,
    scaled so that ``x^T D x = 1``."""
    n = affinity.shape[0]
    if solver == "auto":
        solver = "dense" if n <= DENSE_MAX_NODES else "arpack"
    degree = affinity.sum(axis=1)
    if solver == "dense":
        D = np.diag(degree)
        with single_threaded_blas():
            _, vectors = scipy.linalg.eigh(D - affinity, D, subset_by_index=[1, 2])
        return np.copy(vectors[:, 0])
    if solver == "arpack":
        with single_threaded_blas():
            return _arpack_second_eigenvector(affinity, degree)
    raise ValueError(f"unknown eigen-solver {solver!r}; use 'auto', 'dense' or 'arpack'")


def _arpack_second_eigenvector(affinity: np.ndarray, degree: np.ndarray) -> np.ndarray:
    n = affinity.shape[0]
    inv_sqrt = 1.0 / np.sqrt(degree)
    normalised = affinity * inv_sqrt[:, None] * inv_sqrt[None, :]  # D^-1/2 W D^-1/2, top eigenvalue 1
    top = np.sqrt(degree / degree.sum())  # its unit eigenvector
    # mat-vecs through scipy's BLAS (the transpose is the Fortran-ordered view of the same symmetric
    # matrix): numpy's separate OpenBLAS thread pool would fight scipy's for the cores
    symv = scipy.linalg.blas.get_blas_funcs("symv", (normalised,))

    def matvec(y: np.ndarray) -> np.ndarray:
        y = y.reshape(-1)
        return symv(1.0, normalised.T, y) - top * np.sum(top * y)

    operator = scipy.sparse.linalg.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    start = np.cos(np.arange(n, dtype=np.float64) * 0.7) + 1.5  # deterministic, not orthogonal to anything
    _, vectors = scipy.sparse.linalg.eigsh(operator, k=1, which="LA", v0=start, tol=0)
    vec = vectors[:, 0] * inv_sqrt  # back to the generalised problem: x = D^-1/2 y, x^T D x = 1
    return vec if vec[np.argmax(np.abs(vec))] > 0 else -vec


def split_at_mean(vec: np.ndarray) -> np.ndarray:
    """(N,) -> (N,) bool: entries above the mean (the official ``sum / len``)."""
    return vec > np.sum(vec) / len(vec)


def count_foreground_corners(partition: np.ndarray, grid: tuple[int, int]) -> int:
    """How many of the 4 corner patches are in ``partition`` ((N,) bool)."""
    p = partition.reshape(grid)
    return int(p[0, 0]) + int(p[0, -1]) + int(p[-1, 0]) + int(p[-1, -1])


def foreground_and_seed(vec: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The official foreground choice: split at the mean; reverse when >= 3 corners are foreground,
    else when the seed (argmax |vec|) is background. Returns ((N,) bool foreground, seed index), the
    seed being the argmax of the (possibly negated) eigenvector."""
    partition = split_at_mean(vec)
    seed = int(np.argmax(np.abs(vec)))
    reverse = True if count_foreground_corners(partition, grid) >= 3 else not partition[seed]
    if reverse:
        return np.logical_not(partition), int(np.argmax(-vec))
    return partition, int(np.argmax(vec))


def seed_component(partition: np.ndarray, seed: int, grid: tuple[int, int]) -> np.ndarray:
    """(N,) bool -> (h, w) bool: the 4-connected component of ``partition`` that holds ``seed``
    (TokenCut ``detect_box``)."""
    labels, _ = ndimage.label(partition.reshape(grid))
    return labels == labels[np.unravel_index(seed, grid)]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks thresholded at 0.5 (TokenCut ``metric.IoU``); NaN when both are empty."""
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    union = np.logical_or(a, b).sum()
    inter = np.logical_and(a, b).sum()
    return float(inter / union) if union else float("nan")


# ---------------------------------------------------------------------------------------------------
# BLAS threads


@functools.cache
def _scipy_openblas() -> ctypes.CDLL | None:
    """scipy's bundled OpenBLAS (PyPI wheels), or None for other builds."""
    folder = Path(scipy.__file__).parent.parent / "scipy.libs"
    for path in sorted(folder.glob("libscipy_openblas*.so*")):
        try:
            lib = ctypes.CDLL(str(path))
            lib.scipy_openblas_get_num_threads.restype = ctypes.c_int
            lib.scipy_openblas_set_num_threads.argtypes = [ctypes.c_int]
            return lib
        except (OSError, AttributeError):
            continue
    return None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run scipy's LAPACK/BLAS on one thread for the duration.

    The eigen-solvers issue many small BLAS calls, and OpenBLAS's thread hand-offs stall now and then on
    small shared machines: ``eigh`` of a 1296-node graph takes 0.12 s or, sporadically, 5-12 s with 2
    threads, and a steady 0.19 s with one. A no-op when scipy does not use its bundled OpenBLAS.
    """
    lib = _scipy_openblas()
    if lib is None:
        yield
        return
    previous = lib.scipy_openblas_get_num_threads()
    lib.scipy_openblas_set_num_threads(1)
    try:
        yield
    finally:
        lib.scipy_openblas_set_num_threads(previous)
