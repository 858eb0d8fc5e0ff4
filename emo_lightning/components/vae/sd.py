"""Stable Diffusion's frozen ``AutoencoderKL``."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL
from torch import Tensor

from emo_lightning.components.base import VAE
from emo_lightning.components.diffusers_models import load_diffusers_model
from emo_lightning.registry import register

TINY_VAE = {"block_out_channels": [8, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
            "up_block_types": ["UpDecoderBlock2D"] * 2, "latent_channels": 4, "norm_num_groups": 4,
            "layers_per_block": 1}


@register("vae", "sd", tiny={"config": TINY_VAE})
class StableDiffusionVAE(VAE):
    """Frozen ``AutoencoderKL`` from ``pretrained`` (hub id / SD folder, ``subfolder="vae"``) or a config.

    Encoding takes the posterior mean (deterministic) and multiplies by the scaling factor.
    """

    def __init__(self, pretrained: str | None = None, subfolder: str | None = "vae",
                 config: dict[str, Any] | None = None, scaling_factor: float | None = None):
        super().__init__()
        self.model = load_diffusers_model(AutoencoderKL, "vae 'sd'", pretrained, subfolder, config)
        if pretrained:
            self.pretrained_submodules = ("model",)
        self.model.requires_grad_(False).eval()
        self.scaling_factor = scaling_factor or self.model.config.scaling_factor
        self.latent_channels = self.model.config.latent_channels
        self.downsample = 2 ** (len(self.model.config.block_out_channels) - 1)

    def train(self, mode: bool = True) -> StableDiffusionVAE:
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        posterior = self.model.encode(images.to(self.model.dtype)).latent_dist
        return posterior.mean * self.scaling_factor

    def decode(self, latents: Tensor) -> Tensor:
        return self.model.decode(latents.to(self.model.dtype) / self.scaling_factor).sample
