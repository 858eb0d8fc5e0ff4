"""Per-frame windows over sequences, shared by the audio and speed encoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def features_at_frames(features: Tensor, num_frames: int, num_samples: int, sample_rate: int,
                       feature_rate: float) -> Tensor:
    """``(B, T, D)`` features at ``feature_rate`` Hz → ``(B, num_frames, D)`` at the centres of the video frames
    that evenly cover ``num_samples`` samples, linearly interpolated by time (feature t is centred at
    ``(t + ½) / feature_rate`` s).

    This depends on the clock, not on T: a chunk of audio that starts on a feature
    boundary gives the same values as the whole waveform does for its frames.
    """
    seconds_per_frame = num_samples / sample_rate / num_frames
    centres = (torch.arange(num_frames, device=features.device, dtype=torch.float64) + 0.5) * seconds_per_frame
    position = (centres * feature_rate - 0.5).clamp(0, features.shape[1] - 1)
    lower = position.floor().long()
    upper = (lower + 1).clamp(max=features.shape[1] - 1)
    weight = (position - lower).to(features.dtype)[None, :, None]
    return features[:, lower] * (1 - weight) + features[:, upper] * weight


def sliding_window(features: Tensor, window: int) -> Tensor:
    """``(B, F, D) -> (B, F, 2·window+1, D)``: each frame with its ±window neighbours (edges repeat)."""
    if window == 0:
        return features.unsqueeze(2)
    padded = F.pad(features.transpose(1, 2), (window, window), mode="replicate")  # (B, D, F + 2m)
    return padded.unfold(2, 2 * window + 1, 1).permute(0, 2, 3, 1)  # (B, F, 2m+1, D)


