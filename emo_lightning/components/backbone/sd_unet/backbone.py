"""EMO's backbone on diffusers' ``UNet2DConditionModel`` with Stable Diffusion 1.5's structure.

    reference latent ─► ReferenceNet ─(attn1 inputs, once per video)──────────► backbone attn1 (reference-attention)
    motion latents ──► ReferenceNet ─(unit outputs, once per clip)──► temporal blocks (motion frames)
    audio tokens ───────────────────────────────────────────────────► backbone attn2 (audio-attention)
    speed tokens ───────────────────────────────────────────────────► temporal blocks (speed attention)

The backbone and the ReferenceNet are two copies of the same UNet (EMO starts both from SD 1.5). EMO's layers ride on
them through attention processors and forward hooks (:mod:`.hooks`), so their module trees and state-dict keys stay
exactly SD's and SD 1.5 weights load as they are. Every frame is its own latent image: the VAE must not compress time.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from einops import rearrange
from torch import Tensor, nn

from emo_lightning.components.backbone.sd_unet.hooks import (
    block_key,
    install_backbone,
    install_reference_net,
    temporal_locations,
)
from emo_lightning.components.backbone.sd_unet.state import Checkpointing, UNetState
from emo_lightning.components.base import Backbone, Conditions, TemporalBlockFactory
from emo_lightning.components.diffusers_models import load_diffusers_model
from emo_lightning.registry import register

TINY_UNET = {"sample_size": 8, "block_out_channels": [16, 32], "layers_per_block": 1,
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 16,
             "attention_head_dim": 8, "norm_num_groups": 4}


def load_unet(pretrained: str | None, subfolder: str | None, config: dict[str, Any] | None,
              latent_channels: int) -> UNet2DConditionModel:
    """From an SD 1.5 hub id / folder (its ``unet`` subfolder), or randomly initialised from a config dict (whose
    ``in_channels`` / ``out_channels`` default to the VAE's latent channels)."""
    unet = load_diffusers_model(UNet2DConditionModel, "backbone 'sd_unet'", pretrained, subfolder, config,
                                in_channels=latent_channels, out_channels=latent_channels)
    if unet.config.in_channels != latent_channels or unet.config.out_channels != latent_channels:
        raise ValueError(
            f"the UNet takes {unet.config.in_channels} latent channels and makes {unet.config.out_channels}, but "
            f"the VAE's latents have {latent_channels}: set model.backbone.config.in_channels/out_channels to "
            f"{latent_channels}, or choose a VAE with {unet.config.in_channels}")
    return unet


@register("backbone", "sd_unet", tiny={"config": TINY_UNET})
class SDUNetBackbone(Backbone):
    """Backbone UNet + ReferenceNet (a copy of it) + a temporal block after every resolution unit.

    Args:
        latent_channels, temporal_downsample, speed_dim, temporal_block: derived by EMO (see :class:`Backbone`).
        pretrained: an SD 1.5 hub id or local folder; its ``subfolder`` holds the UNet.
        config: ``UNet2DConditionModel`` arguments for a randomly initialised UNet (instead of ``pretrained``).

    The UNet's text cross-attention (``attn2``) becomes audio-attention: ``audio_dim`` is its
    ``cross_attention_dim`` (768 for SD 1.5).
    """

    def __init__(self, latent_channels: int, temporal_downsample: int, speed_dim: int,
                 temporal_block: TemporalBlockFactory, pretrained: str | None = None, subfolder: str | None = "unet",
                 config: dict[str, Any] | None = None):
        super().__init__()
        if temporal_downsample != 1:
            raise ValueError(f"backbone 'sd_unet' denoises every video frame as its own latent image, but the VAE "
                             f"packs {temporal_downsample} frames into one latent frame: choose an image VAE")
        self.unet = load_unet(pretrained, subfolder, config, latent_channels)
        self.reference_net = copy.deepcopy(self.unet)  # EMO starts both from the same weights
        self.temporal_blocks = nn.ModuleDict({block_key(location): temporal_block(channels, location)
                                              for location, channels in temporal_locations(self.unet).items()})
        self.state = UNetState()
        install_backbone(self.unet, self.temporal_blocks, self.state)
        install_reference_net(self.reference_net, self.state)
        self.latent_channels, self.temporal_downsample, self.speed_dim = latent_channels, 1, speed_dim
        self.audio_dim = self.unet.config.cross_attention_dim
        self.size_multiple = 2 ** (len(self.unet.config.block_out_channels) - 1)
        self.fsdp_wrap_classes = (BasicTransformerBlock, ResnetBlock2D,
                                  *sorted({type(b) for b in self.temporal_blocks.values()}, key=str))

    def parameter_groups(self) -> dict[str, list[nn.Module]]:
        transformer_blocks = [m for m in self.unet.modules() if isinstance(m, BasicTransformerBlock)]
        return {
            "backbone": [self.unet],
            "reference_net": [self.reference_net],
            "audio": [layer for block in transformer_blocks if block.attn2 is not None
                      for layer in (block.attn2, block.norm2)],
            "temporal": list(self.temporal_blocks.values()),
            "speed": [child for block in self.temporal_blocks.values()
                      for name, child in block.named_children() if name.startswith("speed")],
        }

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Activation checkpointing of both UNets' blocks (diffusers' own switch: every transformer block and resnet)
        and of every temporal block (by its hook).

        Recomputation replays the per-forward :class:`UNetState` the blocks saw, so reference- and audio-attention,
        motion frames and speed are recomputed exactly and nothing is captured twice.
        """
        self.state.gradient_checkpointing = enabled
        for unet in (self.unet, self.reference_net):
            if enabled:
                unet.enable_gradient_checkpointing(Checkpointing(self.state))
            elif unet.is_gradient_checkpointing:
                unet.disable_gradient_checkpointing()

    def _null_context(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros(batch, 1, self.audio_dim)

    def _reference_net(self, frames: Tensor, capture: str) -> dict[str, Tensor]:
        timestep = torch.zeros(frames.shape[0], device=frames.device, dtype=torch.long)
        with self.state.use(capture=capture, captured={}):
            self.reference_net(frames, timestep, self._null_context(frames.shape[0], frames))
            return dict(self.state.captured)

    def reference_features(self, latents: Tensor) -> dict[str, Tensor]:
        """ReferenceNet pass over ``(B, C, 1, h, w)`` latents → the tokens entering each attn1 layer, (B, L, C)."""
        if latents.ndim != 5 or latents.shape[2] != 1:
            raise ValueError(f"reference latents must be (B, C, 1, h, w), got {tuple(latents.shape)}")
        return self._reference_net(latents[:, :, 0], "reference")

    def motion_features(self, latents: Tensor) -> dict[str, Tensor]:
        """ReferenceNet pass over ``(B, C, N, h, w)`` motion latents → each temporal location's unit output,
        (B, C', N, h', w')."""
        b = latents.shape[0]
        captured = self._reference_net(rearrange(latents, "b c n h w -> (b n) c h w"), "motion")
        return {k: rearrange(v, "(b n) c h w -> b c n h w", b=b) for k, v in captured.items()}

    def denoise(self, latents: Tensor, timesteps: Tensor, conditions: Conditions, temporal: bool = True) -> Tensor:
        b, _, f = latents.shape[:3]
        sample = rearrange(latents, "b c f h w -> (b f) c h w")
        timesteps = timesteps.expand(b).repeat_interleave(f)
        if conditions.audio is not None:
            context = rearrange(conditions.audio, "b f t d -> (b f) t d").to(latents.dtype)
        else:
            context = self._null_context(b * f, latents)
        with self.state.use(num_frames=f, reference=conditions.reference, motion=conditions.motion,
                            speed=conditions.speed, audio=conditions.audio is not None, temporal=temporal):
            out = self.unet(sample, timesteps, context).sample
        return rearrange(out, "(b f) c h w -> b c f h w", b=b)
