"""Sync-C and Sync-D as SyncNet's authors compute them (syncnet_python's ``evaluate``), which Hallo, MEMO and
LatentSync report: the distance between each window's video embedding and the audio embeddings at every offset in
±``max_offset`` frames (audio zero-padded), averaged over windows; Sync-D is the smallest mean distance, Sync-C
(confidence) the median mean distance minus it, and the offset is where the minimum lies."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def offset_search(video: Tensor, audio: Tensor, max_offset: int = 15) -> dict[str, float]:
    """Scores of one video from its window embeddings ``video`` and ``audio`` (N, dim) each.

    ``offset`` is positive when the sound comes after the picture (syncnet_python prints the opposite sign).
    """
    if video.shape != audio.shape:
        raise ValueError(f"video and audio embeddings differ in shape: {tuple(video.shape)} vs {tuple(audio.shape)}")
    width = 2 * max_offset + 1
    padded = F.pad(audio, (0, 0, max_offset, max_offset))
    distances = torch.stack([F.pairwise_distance(video[i : i + 1].expand(width, -1), padded[i : i + width])
                             for i in range(len(video))])
    mean = distances.mean(0)
    minimum, index = mean.min(0)
    return {"sync_c": float(mean.median() - minimum), "sync_d": float(minimum),
            "sync_offset": float(int(index) - max_offset)}
