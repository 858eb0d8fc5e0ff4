"""Speed encoders: per-frame head rotation speed → speed tokens."""

from emo_lightning.components.speed_encoder import tanh_buckets  # noqa: F401  (register built-ins)
