"""The random draws of a diffusion training step (noise, timestep, condition dropout), made per sample.

Where the batch carries ``sample_id`` (both data modules give one), each sample's draws come from its own generator
seeded by (the run's seed, the step, the sample): what a sample draws does not depend on which rank it landed on
or which samples share its batch. So 2 ranks with batch b draw what 1 rank with batch 2b draws, a resumed run
draws what the killed one would have, and validation draws the same noise at every evaluation (step 0), so its
loss compares over time. Without ``sample_id`` the draws come from torch's global generator.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

TRAINING, VALIDATION = 0, 1


class SampleDraws:
    def __init__(self, batch_size: int, device: torch.device, generators: list[torch.Generator] | None):
        self.batch_size, self.device, self.generators = batch_size, device, generators

    @classmethod
    def for_batch(cls, batch: dict[str, Tensor], step: int, training: bool, device: torch.device) -> SampleDraws:
        b = batch["reference"].shape[0]
        if "sample_id" not in batch:
            return cls(b, device, None)
        base = int(os.environ.get("PL_GLOBAL_SEED", 0))
        purpose, step = (TRAINING, step) if training else (VALIDATION, 0)
        generators = []
        for sample_id in batch["sample_id"].tolist():
            seed = np.random.SeedSequence([base, purpose, step, int(sample_id) & 0xFFFFFFFF]).generate_state(2)
            generators.append(torch.Generator(device).manual_seed(int(seed[0]) << 32 | int(seed[1])))
        return cls(b, device, generators)

    def _per_sample(self, draw) -> Tensor:
        if self.generators is None:
            return draw(None, (self.batch_size,))
        return torch.cat([draw(g, (1,)) for g in self.generators])

    def uniform(self) -> Tensor:
        """(B,) in [0, 1)."""
        return self._per_sample(lambda g, n: torch.rand(n, generator=g, device=self.device))

    def integers(self, high: int) -> Tensor:
        """(B,) in [0, high)."""
        return self._per_sample(lambda g, n: torch.randint(0, high, n, generator=g, device=self.device))

    def normal(self, shape: torch.Size, dtype: torch.dtype) -> Tensor:
        """(B, *shape[1:]) standard normal."""
        return self._per_sample(
            lambda g, n: torch.randn((n[0], *shape[1:]), generator=g, device=self.device, dtype=dtype))
