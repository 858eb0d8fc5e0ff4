"""Temporal blocks: attention along the frame axis, with motion frames and speed."""

from emo_lightning.components.temporal_block import animatediff  # noqa: F401  (register built-ins)
