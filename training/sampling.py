"""A resumable, distributed index sampler for the training DataLoader.

The epoch's order is a pure function of ``(seed, epoch)``: a seeded permutation, split
across ranks (rank ``r`` takes every ``world_size``-th index), cut to whole batches.
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
    def batches_per_epoch(self) -> int:
        return (self.dataset_len // self.world_size) // self.batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def epoch_indices(self, epoch: int) -> List[int]:
        """This rank's indices for a whole epoch (before skipping)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + int(epoch))
            order = torch.randperm(self.dataset_len, generator=g).tolist()
        else:
            order = list(range(self.dataset_len))
        per_rank = order[self.rank :: self.world_size][: self.dataset_len // self.world_size]
        return per_rank[: self.batches_per_epoch * self.batch_size]

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices(self.epoch)
        return iter(indices[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0) * self.batch_size
