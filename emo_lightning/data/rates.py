"""The audio sample rate a data module loads: the one the model's audio encoder declares."""

from __future__ import annotations

import lightning.pytorch as pl

from emo_lightning.components.base import AudioEncoder


def audio_sample_rate(datamodule: pl.LightningDataModule, configured: int | None) -> int:
    """``configured`` when set, else the ``sample_rate`` of the attached model's audio encoder (the interface's
    default when the data module is used without a model)."""
    if configured is not None:
        return configured
    trainer = datamodule.trainer
    model = getattr(trainer.lightning_module, "model", None) if trainer is not None else None
    encoder = getattr(model, "audio_encoder", None)
    return encoder.sample_rate if encoder is not None else AudioEncoder.sample_rate
