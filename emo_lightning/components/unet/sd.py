"""diffusers' ``UNet2DConditionModel`` with Stable Diffusion 1.5's structure."""

from __future__ import annotations

from typing import Any

from diffusers import UNet2DConditionModel

from emo_lightning.registry import register

TINY_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [16, 32],
             "layers_per_block": 1, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 16,
             "attention_head_dim": 8, "norm_num_groups": 4}


@register("unet", "sd", tiny={"config": TINY_UNET})
def sd_unet(pretrained: str | None = None, subfolder: str | None = "unet",
            config: dict[str, Any] | None = None) -> UNet2DConditionModel:
    """From an SD 1.5 hub id / folder (its ``unet``), or randomly initialised from a config dict.

    The text cross-attention (``attn2``) is kept: EMO turns it into audio-attention, so its
    ``cross_attention_dim`` must equal the audio encoder's ``output_dim`` (768 for SD 1.5).
    """
    if pretrained:
        return UNet2DConditionModel.from_pretrained(pretrained, subfolder=subfolder)
    if config is None:
        raise ValueError("unet 'sd' needs `pretrained` (hub id or local path) or a `config` dict")
    return UNet2DConditionModel(**config)
