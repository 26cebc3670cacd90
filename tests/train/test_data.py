from collections import Counter

import pytest
import torch

from autoqvis.structures import Clip
from autoqvis.train.data import MixingBatchSampler, build_loader


def keys(sampler):
    return [[(k.source, k.index, k.seed) for k in batch] for batch in sampler]


def test_resume_continues_the_same_stream():
    full = keys(MixingBatchSampler([7, 5], [0.5, 0.5], batch_size=2, max_iters=40, seed=3))
    tail = keys(MixingBatchSampler([7, 5], [0.5, 0.5], batch_size=2, max_iters=40, seed=3, start_iter=25))
    assert full[25:] == tail


def test_global_batch_is_independent_of_world_size():
    single = keys(MixingBatchSampler([9, 4], [0.5, 0.5], batch_size=4, max_iters=30, seed=1))
    ranks = [
        keys(MixingBatchSampler([9, 4], [0.5, 0.5], batch_size=4, max_iters=30, seed=1, rank=r, world_size=2))
        for r in range(2)
    ]
    assert [a + b for a, b in zip(*ranks)] == single


def test_each_batch_has_one_source_and_epochs_cover_every_item():
    batches = keys(MixingBatchSampler([6, 10], [0.5, 0.5], batch_size=3, max_iters=400, seed=0))
    assert all(len({src for src, _, _ in batch}) == 1 for batch in batches)
    share = Counter(batch[0][0] for batch in batches)
    assert abs(share[0] / 400 - 0.5) < 0.1
    only_a = keys(MixingBatchSampler([6, 10], [1.0, 0.0], batch_size=3, max_iters=4, seed=0))
    assert sorted(index for batch in only_a for _, index, _ in batch) == sorted(
        list(range(6)) * 2
    )  # two full epochs


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        MixingBatchSampler([3], [1.0], batch_size=3, max_iters=1, world_size=2)
    with pytest.raises(ValueError, match="is empty"):
        MixingBatchSampler([0, 3], [0.5, 0.5], batch_size=2, max_iters=1)


class CountingSource:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def clip(self, index, seed):
        g = torch.Generator().manual_seed(seed)
        frames = torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8, generator=g)
        return Clip(
            frames=frames,
            masks=torch.zeros(1, 2, 4, 4, dtype=torch.bool),
            ids=torch.full((1, 2), -1),
            video_id=index,
        )


def test_loader_with_workers_is_deterministic_and_leaves_global_rng_alone():
    sampler = MixingBatchSampler([5], [1.0], batch_size=2, max_iters=6, seed=2)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with_workers = [
        [c.video_id for c in b] for b in build_loader([CountingSource(5)], sampler, num_workers=2)
    ]
    assert torch.equal(before, torch.get_rng_state())
    single = [[c.video_id for c in b] for b in build_loader([CountingSource(5)], sampler, num_workers=0)]
    assert with_workers == single and len(single) == 6
