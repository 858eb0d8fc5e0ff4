"""Hallo's denoising path in one module: identity tokens, face locator and the two UNets."""

from __future__ import annotations

from torch import nn

from emo_lightning.components.backbone.hallo.denoiser import HalloDenoiser
from emo_lightning.components.backbone.hallo.face_locator import HalloFaceLocator
from emo_lightning.components.backbone.hallo.identity import HalloIdentityTokens


class HalloBackbone(nn.Module):
    """Built from Hallo's inference config (``config.yaml``) and SD's UNet ``config.json``; loads ``net.pth``
    through :func:`~emo_lightning.components.backbone.hallo.weights.map_hallo_weights`."""

    def __init__(self, unet_config: dict, audio_dim: int, face_embedding_dim: int = 512, identity_tokens: int = 4,
                 motion_heads: int = 8, motion_layers: int = 1, motion_attentions: int = 2,
                 motion_max_frames: int = 32):
        super().__init__()
        self.denoiser = HalloDenoiser(unet_config, audio_dim, motion_heads=motion_heads, motion_layers=motion_layers,
                                      motion_attentions=motion_attentions, motion_max_frames=motion_max_frames)
        width = self.denoiser.denoising_unet.config.block_out_channels[0]
        self.face_locator = HalloFaceLocator(out_channels=width)
        self.identity = HalloIdentityTokens(face_embedding_dim, unet_config["cross_attention_dim"], identity_tokens)

    @classmethod
    def from_hallo_config(cls, config, unet_config: dict) -> HalloBackbone:
        """``config``: Hallo's inference config (an OmegaConf / mapping with its keys)."""
        extra = config["unet_additional_kwargs"]
        motion = extra["motion_module_kwargs"]
        for name, wanted in (("use_motion_module", True), ("use_audio_module", True), ("motion_module_type", "Vanilla"),
                             ("use_inflated_groupnorm", True), ("unet_use_temporal_attention", False),
                             ("unet_use_cross_frame_attention", False), ("motion_module_mid_block", True),
                             ("motion_module_decoder_only", False)):
            if extra.get(name) != wanted:
                raise ValueError(f"unet_additional_kwargs.{name}={extra.get(name)!r}: only {wanted!r} is supported")
        levels = len(unet_config["block_out_channels"])
        if sorted(extra["motion_module_resolutions"]) != [2 ** i for i in range(levels)]:
            raise ValueError("motion modules at every resolution are supported, got "
                             f"motion_module_resolutions={list(extra['motion_module_resolutions'])}")
        if set(extra["stack_enable_blocks_name"]) != {"up", "down", "mid"} or \
                set(extra["stack_enable_blocks_depth"]) != set(range(levels)):
            raise ValueError("region audio-attention in every block is supported (stack_enable_blocks_name/depth)")
        if motion.get("temporal_position_encoding") is not True or motion.get("temporal_attention_dim_div", 1) != 1:
            raise ValueError("motion modules with positional encoding and temporal_attention_dim_div=1 are supported")
        if any(kind != "Temporal_Self" for kind in motion["attention_block_types"]):
            raise ValueError(f"attention_block_types={list(motion['attention_block_types'])}: only Temporal_Self")
        image = config["image_proj"]
        if config["face_locator"]["conditioning_embedding_channels"] != unet_config["block_out_channels"][0]:
            raise ValueError("face_locator.conditioning_embedding_channels must equal the UNet's first block width")
        return cls(dict(unet_config), extra["audio_attention_dim"], face_embedding_dim=image["clip_embeddings_dim"],
                   identity_tokens=image["clip_extra_context_tokens"], motion_heads=motion["num_attention_heads"],
                   motion_layers=motion["num_transformer_block"],
                   motion_attentions=len(motion["attention_block_types"]),
                   motion_max_frames=motion["temporal_position_encoding_max_len"])
