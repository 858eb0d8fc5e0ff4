"""Wan2.1's video DiT as EMO's backbone (see :mod:`.backbone`)."""

from emo_lightning.components.backbone.wan.backbone import WanBackbone  # noqa: F401  (registers it)
