"""Training data: clip sources, a deterministic mixing batch sampler, and the loader.

Every batch is a pure function of ``(seed, iteration)``, so a resumed run sees exactly the batches an
uninterrupted run would, and the global batch is the same whatever the number of processes:

- each iteration draws one source for the whole global batch (source ``i`` with probability ``probs[i]``;
  AutoQ-VIS: pseudo-labelled real clips 0.5, synthetic clips 0.5);
- each source is read through an endless stream of shuffled epochs; the global batch takes the next
  ``batch_size`` positions of that stream, and rank ``r`` of ``W`` takes its contiguous share;
- each item's augmentation seed is derived from ``(seed, source, position)``.

The official code draws the source independently on each GPU (so a global batch of 4 may mix 2+2); drawing
it once per global batch keeps the same 50/50 expectation and makes runs reproducible across world sizes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from autoqvis.runs.lock import drop_inherited_locks
from autoqvis.structures import Clip

__all__ = ["ClipKey", "ClipList", "ClipSource", "MixedClipDataset", "MixingBatchSampler", "build_loader"]


class ClipSource(Protocol):
    """Anything that makes training clips: ``len()`` items, ``clip(index, seed)`` deterministic."""

    def __len__(self) -> int: ...

    def clip(self, index: int, seed: int) -> Clip: ...


class ClipList:
    """A :class:`ClipSource` of ready-made clips (the seed is ignored): benchmarks and tests."""

    def __init__(self, clips: list[Clip]):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def clip(self, index: int, seed: int) -> Clip:
        return self.clips[index]


@dataclass(frozen=True)
class ClipKey:
    source: int  # which source
    index: int  # item within the source
    seed: int  # augmentation seed


class MixedClipDataset(Dataset):
    """Map-style dataset over :class:`ClipKey`."""

    def __init__(self, sources: Sequence[ClipSource]):
        self.sources = list(sources)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def __getitem__(self, key: ClipKey) -> Clip:
        return self.sources[key.source].clip(key.index, key.seed)


class MixingBatchSampler(Sampler[list[ClipKey]]):
    """Yields this rank's list of keys for iterations ``start_iter .. max_iters - 1`` (see module doc)."""

    def __init__(
        self,
        sizes: Sequence[int],
        probs: Sequence[float],
        batch_size: int,
        max_iters: int,
        seed: int = 0,
        start_iter: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if len(sizes) != len(probs) or not sizes:
            raise ValueError(
                f"need one probability per source, got {len(sizes)} sources and {len(probs)} probabilities"
            )
        if any(size <= 0 for size, p in zip(sizes, probs) if p > 0):
            raise ValueError(f"a source with non-zero probability is empty: sizes {list(sizes)}")
        if batch_size % world_size:
            raise ValueError(
                f"the global batch size {batch_size} must be a multiple of the number of processes {world_size}"
            )
        total = float(sum(probs))
        self.sizes, self.probs = list(sizes), [p / total for p in probs]
        self.batch_size, self.max_iters, self.seed = batch_size, max_iters, seed
        self.start_iter, self.rank, self.world_size = start_iter, rank, world_size
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return max(0, self.max_iters - self.start_iter)

    def source_of(self, iteration: int) -> int:
        rng = np.random.default_rng([self.seed, iteration, 0x5EED])
        return int(rng.choice(len(self.sizes), p=self.probs))

    def __iter__(self) -> Iterator[list[ClipKey]]:
        # positions already consumed in each source's stream before start_iter
        used = [0] * len(self.sizes)
        for it in range(self.start_iter):
            used[self.source_of(it)] += self.batch_size
        share = self.batch_size // self.world_size
        for it in range(self.start_iter, self.max_iters):
            source = self.source_of(it)
            first = used[source] + self.rank * share
            yield [self._key(source, first + j) for j in range(share)]
            used[source] += self.batch_size

    def _key(self, source: int, position: int) -> ClipKey:
        size = self.sizes[source]
        epoch, offset = divmod(position, size)
        order = self._orders.get((source, epoch))
        if order is None:
            order = np.random.default_rng([self.seed, source, epoch]).permutation(size)
            self._orders = {
                (source, epoch): order,
                **{k: v for k, v in self._orders.items() if k[0] != source},
            }
        seed = int(np.random.default_rng([self.seed, source, position, 0xA06]).integers(2**31 - 1))
        return ClipKey(source=source, index=int(order[offset]), seed=seed)


def _collate(batch: list[Clip]) -> list[Clip]:
    return batch


def build_loader(
    sources: Sequence[ClipSource],
    sampler: MixingBatchSampler,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader[list[Clip]]:
    """DataLoader yielding lists of clips; it never touches the global RNG (exact resume). ``pin_memory``
    puts each clip's tensors in page-locked memory (see :meth:`Clip.pin_memory`) for asynchronous copies to
    a GPU."""
    return DataLoader(
        MixedClipDataset(sources),
        batch_sampler=sampler,
        collate_fn=_collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(sampler.seed),
        prefetch_factor=2 if num_workers > 0 else None,
        worker_init_fn=functools.partial(_init_worker, os.getpid()) if num_workers > 0 else None,
    )


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _init_worker(parent: int, worker_id: int) -> None:
    """Tie a data-loader worker to the training process:

    - it ends when the parent ends, however the parent ends (``kill -9`` included: Linux sends it SIGKILL via
      ``PR_SET_PDEATHSIG``; elsewhere PyTorch's own check ends it within seconds);
    - it does not hold the parent's output locks (a killed parent's lock is free at once);
    - SIGTERM (``kill`` of the process group) ends it quietly, leaving the parent to end the command the
      SIGTERM way (one line, exit code 143, finished work kept), not with a "worker killed" error.
    """
    drop_inherited_locks()
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the line above
        os._exit(0)
