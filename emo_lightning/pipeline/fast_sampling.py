"""Fast-generation options of the sampling loop: guidance only in an interval of noise levels, step caching
(reusing a prediction while the input has barely moved), autocast precision, channels-last and torch.compile.

None of them changes the model; each trades (a little) exactness for time. The shortcuts that change nothing (reference
keys and values projected once per video, motion-frame rows skipped in the temporal blocks) live in the backbone.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from emo_lightning.components.base import Conditions

PRECISIONS = {"32": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class GuidanceInterval:
    """Noise levels (t / num_train_timesteps, 1 = pure noise) in ``[low, high]`` run every guidance branch; the
    other steps run only the fully conditioned one (guidance in a limited interval, Kynkäänniemi et al. 2024)."""

    high: float = 1.0
    low: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"the guidance interval must satisfy 0 <= low <= high <= 1, got [{self.low}, {self.high}]")

    def applies(self, t: Tensor | float, num_train_timesteps: int) -> bool:
        level = float(t) / num_train_timesteps
        return self.low <= level <= self.high

    def passes(self, timesteps: Tensor, num_train_timesteps: int, branches: int) -> int:
        """Backbone passes over ``timesteps`` with ``branches`` guidance branches (1 outside the interval)."""
        return sum(branches if self.applies(t, num_train_timesteps) else 1 for t in timesteps)


class StepCache:
    """Reuses the last prediction while the model input has changed little since it was computed (the TeaCache
    idea, on the whole prediction, so it works for any backbone): the relative L1 change of the input is summed
    over steps, and the backbone runs again once the sum reaches ``threshold`` (0: never reuse)."""

    def __init__(self, threshold: float = 0.0):
        if threshold < 0:
            raise ValueError(f"cache_threshold must be >= 0, got {threshold}")
        self.threshold = threshold
        self.previous: Tensor | None = None
        self.prediction: Tensor | None = None
        self.accumulated = 0.0
        self.skipped = 0

    def lookup(self, model_in: Tensor) -> Tensor | None:
        """The cached prediction if it may stand in for this step's, else None (then :meth:`store` the new one)."""
        previous, self.previous = self.previous, model_in
        if self.threshold <= 0 or self.prediction is None or previous is None:
            return None
        self.accumulated += ((model_in - previous).abs().mean() / previous.abs().mean().clamp_min(1e-8)).item()
        if self.accumulated >= self.threshold:
            return None
        self.skipped += 1
        return self.prediction

    def store(self, prediction: Tensor) -> None:
        self.prediction, self.accumulated = prediction, 0.0


def precision_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (None: fp32, no autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """Autocast for ``precision`` (``32``, ``bf16`` or ``fp16``); weights stay as they are."""
    dtype = precision_dtype(precision)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype)


def prepare_backbone(backbone: nn.Module, channels_last: bool = False, compile: bool = False) -> None:
    """Channels-last weights and/or ``torch.compile`` of the backbone's denoising call (its ``denoise``, or its
    forward), in place: state-dict keys stay, and the first call afterwards pays the compile time."""
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
    if compile and not getattr(backbone, "_compiled_for_generation", False):
        if callable(getattr(backbone, "denoise", None)):
            backbone.denoise = torch.compile(backbone.denoise)
        else:
            backbone.compile()
        backbone._compiled_for_generation = True


def branch_rows(conditions: Conditions, start: int, stop: int) -> Conditions:
    """The rows ``start:stop`` of every condition (one guidance branch out of the batched ones)."""
    def rows(value: Tensor | dict[str, Tensor] | None) -> Tensor | dict[str, Tensor] | None:
        if isinstance(value, dict):
            return {k: v[start:stop] for k, v in value.items()}
        return None if value is None else value[start:stop]

    return Conditions(**{f.name: rows(getattr(conditions, f.name)) for f in fields(conditions)})
