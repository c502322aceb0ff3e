"""Data order that survives interruptions and scales out.

:class:`ResumableSampler` shuffles with its own generator seeded by ``(seed, epoch)`` and shards
the permutation over distributed ranks, so that ``w`` processes with batch ``B`` see, step for
step, the batches of one process with batch ``w * B``; it can skip the first items of an epoch
(the training data module tells it where a resumed run picks up).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ResumableSampler(Sampler[int]):
    """Indices of this rank's shard of a dataset of ``num_samples`` items.

    ``shuffle``: a permutation drawn from ``(seed, epoch)`` (Lightning calls :meth:`set_epoch`),
    the same on every rank; rank ``r`` of ``w`` takes positions ``r, r + w, ...``, so the
    ranks' batches together are the batches of a one-process run with ``w`` times the batch
    size. ``pad``: the permutation is padded (wrapping around) to a multiple of ``w`` so every
    rank has the same number of items (training); without it the shards may differ by one
    (evaluation, where nothing is repeated). :meth:`resume_at` skips the first items of one
    epoch's shard.
    """

    def __init__(self, num_samples: int, *, shuffle: bool, seed: int = 0, pad: bool = True):
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.pad = pad
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, items to skip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, skip: int) -> None:
        self.epoch = epoch
        self._resume = (epoch, skip)

    def _shard(self) -> list[int]:
        rank, world = rank_and_world()
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        if self.pad and len(order) % world:
            extra = world - len(order) % world
            order += (order * math.ceil(extra / len(order)))[:extra]
        return order[rank::world]

    def __len__(self) -> int:
        rank, world = rank_and_world()
        if self.pad:
            return math.ceil(self.num_samples / world)
        return len(range(rank, self.num_samples, world))

    def __iter__(self) -> Iterator[int]:
        shard = self._shard()
        if self._resume is not None and self._resume[0] == self.epoch:
            shard = shard[self._resume[1]:]
        self._resume = None
        yield from shard


__all__ = ["ResumableSampler", "rank_and_world"]
