"""Backbones: EMO's denoiser with its reference path."""

from emo_lightning.components.backbone import wan  # noqa: F401  (register built-ins)
