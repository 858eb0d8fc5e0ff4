"""Evaluation on held-out synthetic talking faces: lip sync, identity, clip-boundary smoothness."""

from emo_lightning.evaluation.metrics import (
    boundary_ratio,
    estimate_poses,
    identity_color_error,
    measure_mouth_series,
    pearson,
)

__all__ = ["boundary_ratio", "estimate_poses", "identity_color_error", "measure_mouth_series", "pearson"]
