"""A data loader whose position Lightning saves in checkpoints, so that a resumed run reads on from where the
killed one stopped (instead of restarting the epoch).

Lightning calls ``state_dict()`` on a training loader when it saves a checkpoint and ``load_state_dict()`` before it
iterates again on resume. The order is a permutation drawn from (seed, epoch) only, sharded over the ranks as
:class:`~torch.utils.data.DistributedSampler` does (Lightning then leaves the sampler as it is), so the position is
one number: the samples each rank has taken in the current epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """:class:`DistributedSampler` (shuffled by seed + epoch) that can start ``start`` samples into its shard, once.
    Its length stays the whole shard's, as Lightning expects of a loader resumed mid-epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self.start = self.start, 0
        return iter(indices[start:])


class ResumableDataLoader(DataLoader):
    """A :class:`DataLoader` over a :class:`ResumableSampler` that reports and restores its position."""

    sampler: ResumableSampler

    def __init__(self, dataset: Dataset, sampler: ResumableSampler, **kwargs: Any):
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._epoch_start = self._yielded = 0

    def __iter__(self) -> Iterator[Any]:
        self._epoch_start, self._yielded = self.sampler.start, 0
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "samples": self._epoch_start + self._yielded * self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self.sampler.start = state["samples"]
