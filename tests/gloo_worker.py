"""A DDP worker for tests/test_metrics.py, in its own module so that spawned processes import only what it needs."""

from __future__ import annotations

import torch
import torch.distributed as dist

from emo_lightning.evaluation.frechet import FrechetDistance
from emo_lightning.evaluation.video_scores import VideoScores


def metrics_on(features: torch.Tensor, scores: list[float]) -> tuple[float, dict[str, float]]:
    """A Fréchet distance (features vs. a scaled, shifted copy) and the mean of per-video scores."""
    frechet, video_scores = FrechetDistance(features.shape[1]), VideoScores(["score"])
    frechet.update(features, real=True)
    frechet.update(features * 1.5 + 0.3, real=False)
    for score in scores:
        video_scores.update({"score": score})
    return float(frechet.compute()), {k: float(v) for k, v in video_scores.compute().items()}


def worker(rank: int, port: int, features: torch.Tensor, scores: list[float], queue) -> None:
    """Rank ``rank`` of 2 takes every other sample; the metrics sync over gloo in ``compute``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        queue.put((rank, metrics_on(features[rank::2], scores[rank::2])))
    finally:
        dist.destroy_process_group()
