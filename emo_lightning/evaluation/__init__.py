"""Evaluation: the held-out synthetic benchmark's metrics (below), and real-video metrics (``scorer``, ``evaluate``).

The names below are imported on first use, so that importing one metric module (e.g. in a DDP worker) does not
import the synthetic data generator and Lightning with it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["boundary_ratio", "estimate_poses", "identity_color_error", "measure_mouth_series", "pearson"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from emo_lightning.evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
