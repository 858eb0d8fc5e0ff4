"""What a data module reads off the attached model: the audio encoder's sample rate, the face locator's map style."""

from __future__ import annotations

import lightning.pytorch as pl

from emo_lightning.components.base import AudioEncoder
from emo_lightning.components.face_locator.landmark_map import LandmarkMap


def audio_sample_rate(datamodule: pl.LightningDataModule, configured: int | None) -> int:
    """``configured`` when set, else the ``sample_rate`` of the attached model's audio encoder (the interface's
    default when the data module is used without a model)."""
    if configured is not None:
        return configured
    encoder = getattr(_model(datamodule), "audio_encoder", None)
    return encoder.sample_rate if encoder is not None else AudioEncoder.sample_rate


def landmark_style(datamodule: pl.LightningDataModule) -> LandmarkMap | None:
    """How the attached model's face locator wants landmark maps drawn (None: it takes none, or no model is
    attached), so that only a model that uses them pays for them."""
    return getattr(getattr(_model(datamodule), "face_locator", None), "landmark_style", None)


def _model(datamodule: pl.LightningDataModule) -> object | None:
    trainer = datamodule.trainer
    return getattr(trainer.lightning_module, "model", None) if trainer is not None else None
