"""A resumable, distributed index sampler for the training DataLoader.

The epoch's order is a pure function of ``(seed, epoch)``: a seeded permutation cut into
*global* batches of ``batch_size * world_size`` indices; rank ``r`` takes the ``r``-th
slice of ``batch_size`` of each. So K ranks with batch b see, step for step, exactly the
clips (in the same order) that 1 process with batch K*b sees, which is what makes DDP
training equal to single-process training (tests/test_ddp_equivalence.py).
``start_batch`` skips what was already consumed, so resuming mid-epoch continues with
exactly the batches a straight run would have seen.
"""

from __future__ import annotations

from typing import Iterator, List

import torch
from torch.utils.data import Sampler


class ResumableDistributedSampler(Sampler[int]):
    def __init__(self, dataset_len: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1):
        if dataset_len < 1:
            raise ValueError("the dataset is empty")
        self.dataset_len = int(dataset_len)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.start_batch = 0

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_len // self.global_batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def global_order(self, epoch: int) -> List[int]:
        """The epoch's indices over all ranks, cut to whole global batches."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + int(epoch))
            order = torch.randperm(self.dataset_len, generator=g).tolist()
        else:
            order = list(range(self.dataset_len))
        return order[: self.batches_per_epoch * self.global_batch_size]

    def epoch_indices(self, epoch: int) -> List[int]:
        """This rank's indices for a whole epoch (before skipping)."""
        order, gb, b = self.global_order(epoch), self.global_batch_size, self.batch_size
        start = self.rank * b
        return [i for k in range(0, len(order), gb) for i in order[k + start : k + start + b]]

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices(self.epoch)
        return iter(indices[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0) * self.batch_size
