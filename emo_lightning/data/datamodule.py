"""LightningDataModule over the procedural synthetic talking faces."""

from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from emo_lightning.data.model_requirements import audio_sample_rate, landmark_style
from emo_lightning.data.resumable import ResumableDataLoader, ResumableSampler
from emo_lightning.data.synthetic import SyntheticTalkingFaces
from emo_lightning.model.stages import Stage


class SyntheticDataModule(pl.LightningDataModule):
    """Train on the "train" split; validate and test on the held-out "val" split (other people, other
    speech). Data is generated on the fly, so there is nothing to download or prepare. Audio is made at
    ``sample_rate`` (None: the model's audio encoder's rate); landmark maps are drawn when the model's face locator
    takes them."""

    def __init__(
        self,
        stage: int | str = 2,
        resolution: int = 32,
        num_frames: int = 8,
        motion_frames: int = 4,
        fps: float = 25.0,
        sample_rate: int | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        train_samples: int = 512,
        val_samples: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__()
        stage = int(Stage.of(stage))  # saved as its number
        self.save_hyperparameters()

    def _dataset(self, split: str, num_samples: int) -> SyntheticTalkingFaces:
        hp = self.hparams
        return SyntheticTalkingFaces(
            num_samples,
            stage=hp.stage,
            resolution=hp.resolution,
            num_frames=hp.num_frames,
            motion_frames=hp.motion_frames,
            fps=hp.fps,
            sample_rate=audio_sample_rate(self, hp.sample_rate),
            seed=hp.seed,
            split=split,
            landmark_style=landmark_style(self),
        )

    def setup(self, stage: str | None = None) -> None:
        self.train_set = self._dataset("train", self.hparams.train_samples)
        self.val_set = self._dataset("val", self.hparams.val_samples)

    def _loader(self, dataset: SyntheticTalkingFaces) -> DataLoader:
        return DataLoader(dataset, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers,
                          persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> ResumableDataLoader:
        """Shuffled by (seed, epoch), sharded over the ranks, and resumable mid-epoch (see ``data/resumable.py``)."""
        trainer = self.trainer
        sampler = ResumableSampler(self.train_set, num_replicas=trainer.world_size if trainer else 1,
                                   rank=trainer.global_rank if trainer else 0, seed=self.hparams.seed)
        return ResumableDataLoader(self.train_set, sampler, batch_size=self.hparams.batch_size,
                                   num_workers=self.hparams.num_workers,
                                   persistent_workers=self.hparams.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)
