"""Videos generated during training for people to watch and for metrics to score.

A metric of generated videos is any function ``list[GeneratedSample] -> dict[str, float]``; name it (its dotted
import path) in ``callbacks.samples.metrics`` and its numbers are logged under ``val/`` at every validation, beside
the videos (see :class:`emo_lightning.training.samples.ValidationSamples`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class GeneratedSample:
    """One generated video with what it was made from."""

    name: str
    frames: np.ndarray  # (F, H, W, 3) uint8, generated
    reference: np.ndarray  # (H, W, 3) uint8, the portrait it was generated from
    audio: np.ndarray  # (S,) float32, the driving audio
    sample_rate: int
    fps: float
    ground_truth: np.ndarray | None = None  # (F, H, W, 3) uint8, the real video of that audio where there is one


VideoMetric = Callable[[list[GeneratedSample]], dict[str, float]]


def load_metric(name: str) -> VideoMetric:
    """The function at dotted path ``name`` (``package.module.function``)."""
    module, _, attribute = name.rpartition(".")
    try:
        metric = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"video metric {name!r} is not an importable function (package.module.function): {err}"
                         ) from err
    if not callable(metric):
        raise ValueError(f"video metric {name!r} is not callable")
    return metric
