"""EMO's denoisers with their reference paths (see :class:`emo_lightning.components.base.Backbone`)."""

from emo_lightning.components.backbone import sd_unet, wan  # noqa: F401  (register built-ins)
