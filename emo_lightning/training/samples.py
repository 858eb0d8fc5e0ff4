"""Sample videos at every validation, so that a person can see whether the model is getting better.

The same references, audio and seeds every time, so the panels compare over time. On synthetic data: the held-out
identities and speech of the synthetic benchmark (``emo_lightning.evaluation.synthetic_benchmark``), with its
lip-sync and identity numbers; on any other data: the first validation items. Videos (with their audio) are written to
``<default_root_dir>/samples/step_<N>/<name>.mp4`` and sent to W&B as ``wandb.Video``; the numbers go to every
logger under ``val/``. Video metrics named in ``metrics`` (see :mod:`emo_lightning.evaluation.samples`) score the
same videos.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only

from emo_lightning.data import SyntheticDataModule
from emo_lightning.evaluation.samples import GeneratedSample, load_metric
from emo_lightning.media import Mp4Writer, read_video


def _uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] channels-first (3, H, W) or (3, F, H, W) → uint8 channels-last."""
    images = ((images.float() + 1) * 127.5).round().clamp(0, 255).byte()
    return (images.permute(1, 2, 0) if images.ndim == 3 else images.permute(1, 2, 3, 0)).cpu().numpy()


class ValidationSamples(pl.Callback):
    """Generate ``num_videos`` videos (``seconds`` long on synthetic data; the item's length otherwise) with
    ``seed`` at the end of every validation during fit, on rank 0, with the weights validation uses (EMA).

    Args:
        num_videos: how many videos.
        seconds: the length of the synthetic held-out videos.
        seed: the generation seed (the same each time).
        synthetic_benchmark: on synthetic data, also log the benchmark's ``val/sync_pearson`` (generated mouth vs.
            audio loudness), ``val/identity_color_error`` and ``val/boundary_ratio``.
        metrics: dotted paths of video metrics, ``list[GeneratedSample] -> dict[str, float]``.
    """

    def __init__(self, num_videos: int = 2, seconds: float = 2.0, seed: int = 0, synthetic_benchmark: bool = True,
                 metrics: list[str] | None = None):
        self.num_videos, self.seconds, self.seed = num_videos, seconds, seed
        self.synthetic_benchmark = synthetic_benchmark
        self.metrics = [load_metric(name) for name in metrics or []]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or self.num_videos <= 0:
            return
        folder = Path(trainer.default_root_dir) / "samples" / f"step_{trainer.global_step}"
        scores = self._generate(trainer, pl_module, folder)
        for key, value in (scores or {}).items():
            pl_module.log(f"val/{key}", float(value), rank_zero_only=True, batch_size=1)

    @rank_zero_only
    def _generate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, folder: Path) -> dict[str, float]:
        folder.mkdir(parents=True, exist_ok=True)
        synthetic = isinstance(trainer.datamodule, SyntheticDataModule) and pl_module.uses_video
        with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else []):
            samples, scores = (self._synthetic(pl_module, folder) if synthetic
                               else self._from_validation_items(trainer, pl_module, folder))
        for metric in self.metrics:
            scores.update(metric(samples))
        self._log_videos(trainer, folder, samples)
        return scores

    def _synthetic(self, pl_module: pl.LightningModule, folder: Path) -> tuple[list[GeneratedSample], dict]:
        from emo_lightning.evaluation.synthetic_benchmark import score_held_out_videos

        pipeline = pl_module.pipeline()
        metrics, videos = score_held_out_videos(pipeline, self.num_videos, self.seconds, self.seed,
                                                audio_zeroed=False, progress=False)
        samples = []
        for index, video in enumerate(videos):
            example = video["example"]
            sample = GeneratedSample(f"held_out_{index}", video["frames"], example.portrait,
                                     example.clip["audio"].astype(np.float32), pipeline.sample_rate,
                                     pipeline.settings.fps, example.clip["frames"])
            self._write(folder, sample)
            samples.append(sample)
        scores = {}
        if self.synthetic_benchmark:
            scores = {k: metrics[k] for k in ("sync_pearson", "identity_color_error", "boundary_ratio") if k in metrics}
        return samples, scores

    def _from_validation_items(self, trainer: pl.Trainer, pl_module: pl.LightningModule, folder: Path
                               ) -> tuple[list[GeneratedSample], dict]:
        dataset = getattr(trainer.datamodule, "val_set", None)
        if dataset is None:
            return [], {}
        pipeline, samples = pl_module.pipeline(), []
        rate, fps = pipeline.sample_rate, pipeline.settings.fps
        for index in range(min(self.num_videos, len(dataset))):
            item = dataset[index]
            path = folder / f"validation_{index}.mp4"
            audio = item["audio"] if "audio" in item else torch.zeros(round(rate / fps))
            maps = item["landmark_map"][None] if "landmark_map" in item else None
            pipeline.write_video(path, item["reference"], audio, item["mask"], seed=self.seed, landmarks=maps)
            frames, _ = read_video(path)
            samples.append(GeneratedSample(path.stem, frames, _uint8(item["reference"]), audio.numpy(), rate, fps,
                                           _uint8(item["frames"])))
        return samples, {}

    @staticmethod
    def _write(folder: Path, sample: GeneratedSample) -> None:
        with Mp4Writer(folder / f"{sample.name}.mp4", fps=sample.fps, width=sample.frames.shape[2],
                       height=sample.frames.shape[1], audio=sample.audio, sample_rate=sample.sample_rate) as writer:
            writer.write(sample.frames)

    @staticmethod
    def _log_videos(trainer: pl.Trainer, folder: Path, samples: list[GeneratedSample]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                videos = {f"samples/{s.name}": wandb.Video(str(folder / f"{s.name}.mp4"), format="mp4")
                          for s in samples}
                logger.experiment.log({**videos, "trainer/global_step": trainer.global_step})
