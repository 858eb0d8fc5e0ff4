"""``sd_unet``: EMO's backbone on diffusers' SD 1.5 UNet (:mod:`.backbone`); the attention processors
(:mod:`.attention`), temporal-block hooks (:mod:`.hooks`) and per-forward state (:mod:`.state`) are its private
implementation."""

from emo_lightning.components.backbone.sd_unet.backbone import TINY_UNET, SDUNetBackbone

__all__ = ["TINY_UNET", "SDUNetBackbone"]
