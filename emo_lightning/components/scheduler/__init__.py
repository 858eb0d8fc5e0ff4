"""Noise schedulers (diffusers)."""

from emo_lightning.components.scheduler import schedulers  # noqa: F401  (register built-ins)
