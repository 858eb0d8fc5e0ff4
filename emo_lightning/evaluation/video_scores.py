"""Per-video scores as a torchmetrics Metric: each ``update`` adds one video's named values; ``compute`` averages
each over the videos where it is defined (NaN = undefined, e.g. no face found); the values themselves stay
available per video for the CSV. The lists are synced across DDP ranks by concatenation."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor
from torchmetrics import Metric


class VideoScores(Metric):
    """Mean over videos of each of ``names``."""

    full_state_update = False

    def __init__(self, names: Iterable[str]):
        super().__init__()
        self.names = tuple(names)
        for name in self.names:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, values: dict[str, float]) -> None:
        unknown = set(values) - set(self.names)
        if unknown:
            raise KeyError(f"{type(self).__name__} scores {list(self.names)}, not {sorted(unknown)}")
        for name in self.names:
            value = values.get(name, math.nan)
            getattr(self, name).append(torch.tensor([float(value)], dtype=torch.float64, device=self.device))

    def per_video(self) -> dict[str, list[float]]:
        return {name: _values(getattr(self, name)).tolist() for name in self.names}

    def compute(self) -> dict[str, Tensor]:
        out = {}
        for name in self.names:
            values = _values(getattr(self, name))
            finite = values[torch.isfinite(values)]
            out[name] = finite.mean() if len(finite) else torch.tensor(math.nan, dtype=torch.float64)
        return out


def _values(state: Tensor | list[Tensor]) -> Tensor:
    if isinstance(state, Tensor):  # after a DDP sync the list is one concatenated tensor
        return state.reshape(-1)
    return torch.cat(state) if state else torch.zeros(0, dtype=torch.float64)
