"""``emo test``'s evaluation: every held-out item is generated from its own first frame and audio, written as an MP4,
read back and scored against the item's frames with :class:`~emo_lightning.evaluation.scorer.VideoScorer`; the
metrics go to the logger and to ``output`` (metrics.json, metrics.md, per_video.csv, the generated videos)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from einops import rearrange
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from tqdm.auto import tqdm

from emo_lightning.evaluation.report import markdown_table, write_report
from emo_lightning.evaluation.scorer import Video, VideoScorer
from emo_lightning.media import load_audio, read_video
from emo_lightning.pipeline import EMOPipeline


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(3, F, H, W) in [-1, 1] → uint8 (F, H, W, 3)."""
    return ((rearrange(video, "c f h w -> f h w c").float() + 1) * 127.5).round().clamp(0, 255).byte().cpu().numpy()


class HeldOutEvaluation(pl.Callback):
    """Generates and scores the test set's items during ``trainer.test``.

    Args:
        output: folder for the generated videos and the reports.
        components: kind → component spec (``name`` + arguments), as ``conf/evaluate.yaml`` chooses them.
        options: :class:`VideoScorer` options.
        steps: denoising steps (default: the model's).
        seed: generation seed.
        max_items: generate and score at most this many items per process (None: all).
    """

    def __init__(self, output: str, components: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                 steps: int | None = None, seed: int = 0, max_items: int | None = None):
        self.output, self.components, self.options = Path(output), components or {}, options or {}
        self.steps, self.seed, self.max_items = steps, seed, max_items
        self.scorer: VideoScorer | None = None
        self.pipeline: EMOPipeline | None = None
        self.names: list[str] = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.scorer, self.names = VideoScorer(self.components, **self.options, device=pl_module.device), []
        self.pipeline = pl_module.pipeline()

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if "audio" not in batch:
            rank_zero_warn("emo test: the test items have no audio (a stage-1 model): nothing to generate or score")
            return
        rate = self.pipeline.sample_rate
        count = batch["frames"].shape[0]
        if self.max_items is not None:
            count = min(count, self.max_items - len(self.names))
        if count <= 0:
            return
        for b in tqdm(range(count), desc=f"emo test: generating batch {batch_idx}", leave=False,
                      disable=trainer.global_rank != 0):
            name = f"rank{trainer.global_rank}_batch{batch_idx}_item{b}"
            path = self.output / "videos" / f"{name}.mp4"
            speed = float(batch["speed"][b].median()) if "speed" in batch else None
            maps = batch["landmark_map"][b : b + 1] if "landmark_map" in batch else None
            self.pipeline.write_video(path, batch["frames"][b, :, 0], batch["audio"][b], batch["mask"][b],
                                      seed=self.seed, steps=self.steps, speed=speed, landmarks=maps)
            frames, fps = read_video(path)
            truth = to_uint8_frames(batch["frames"][b])
            self.scorer.update(Video(name, frames, fps, load_audio(path, rate, from_first_frame=True), rate,
                                     reference=truth[0], ground_truth=truth))
            self.names.append(name)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.names:
            return
        results = self.scorer.compute(with_ground_truth=True, with_audio=True)
        values = {f"test/{k}": v for k, v in results.items() if isinstance(v, float) and np.isfinite(v)}
        pl_module.log_dict(values, batch_size=len(self.names))
        if trainer.is_global_zero:
            write_report(self.output, results, self.scorer.per_video(), self.names, {"videos": len(self.names)})
            rank_zero_info(f"emo test: {len(self.names)} held-out items generated and scored → {self.output}\n"
                           + markdown_table(results))
