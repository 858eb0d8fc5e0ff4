"""Per-frame windows over sequences, shared by the audio and speed encoders."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def resample_frames(features: Tensor, num_frames: int) -> Tensor:
    """Linearly resample ``(B, T, D)`` features along time to ``(B, num_frames, D)``."""
    if features.shape[1] == num_frames:
        return features
    resampled = F.interpolate(features.transpose(1, 2), size=num_frames, mode="linear", align_corners=False)
    return resampled.transpose(1, 2)


def sliding_window(features: Tensor, window: int) -> Tensor:
    """``(B, F, D) -> (B, F, 2·window+1, D)``: each frame with its ±window neighbours (edges repeat)."""
    if window == 0:
        return features.unsqueeze(2)
    padded = F.pad(features.transpose(1, 2), (window, window), mode="replicate")  # (B, D, F + 2m)
    return padded.unfold(2, 2 * window + 1, 1).permute(0, 2, 3, 1)  # (B, F, 2m+1, D)
