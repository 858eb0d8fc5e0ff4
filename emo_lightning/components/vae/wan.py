"""Wan2.1's frozen causal 3-D VAE (diffusers' ``AutoencoderKLWan``): 4× temporal, 8× spatial compression."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKLWan
from torch import Tensor

from emo_lightning.components.base import VAE
from emo_lightning.components.diffusers_models import load_diffusers_model
from emo_lightning.registry import register

TINY_WAN_VAE = {"base_dim": 8, "z_dim": 4, "dim_mult": [1, 1, 1], "num_res_blocks": 1,
                "temperal_downsample": [True, True], "latents_mean": [0.0] * 4, "latents_std": [1.0] * 4}


@register("vae", "wan", tiny={"config": TINY_WAN_VAE})
class WanVAE(VAE):
    """Frozen ``AutoencoderKLWan`` from ``pretrained`` (hub id / ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``-layout folder,
    ``subfolder="vae"``) or a config; latents are normalised with the model's ``latents_mean`` / ``latents_std``
    (as diffusers' Wan pipelines do) and are the posterior mean (deterministic).

    Causal in time: the first frame is coded alone, each following 4 frames into one latent frame. Given
    1 + 4k + r frames (0 < r < 4), ``AutoencoderKLWan`` itself drops the last r; here the video is padded with
    copies of its last frame to 1 + 4(k + 1) frames first, so no frame is lost: ``latent_frames(n)`` is
    1 + ⌈(n − 1)/4⌉ and ``decode_video`` gives ``frames(F') ≥ n`` frames, the caller crops to n.
    An image is a 1-frame video.
    """

    def __init__(self, pretrained: str | None = None, subfolder: str | None = "vae",
                 config: dict[str, Any] | None = None):
        super().__init__()
        self.model = load_diffusers_model(AutoencoderKLWan, "vae 'wan'", pretrained, subfolder, config)
        if pretrained:
            self.pretrained_submodules = ("model",)
        self.model.requires_grad_(False).eval()
        cfg = self.model.config
        self.temporal_downsample = 2 ** sum(cfg.temperal_downsample)
        if self.temporal_downsample != 4:
            raise ValueError(f"AutoencoderKLWan codes frames in chunks of 4, so its config must downsample time "
                             f"4x (two True in temperal_downsample), got {list(cfg.temperal_downsample)}")
        self.latent_channels = cfg.z_dim
        self.downsample = 2 ** (len(cfg.dim_mult) - 1) * (cfg.patch_size or 1)
        stats = torch.tensor([cfg.latents_mean, cfg.latents_std], dtype=torch.float32).view(2, 1, -1, 1, 1, 1)
        self.register_buffer("latent_stats", stats, persistent=False)

    def train(self, mode: bool = True) -> WanVAE:
        super().train(mode)
        self.model.eval()
        return self

    def encode(self, images: Tensor) -> Tensor:
        return self.encode_video(images[:, :, None])[:, :, 0]

    def decode(self, latents: Tensor) -> Tensor:
        return self.decode_video(latents[:, :, None])[:, :, 0]

    @torch.no_grad()
    def encode_video(self, video: Tensor) -> Tensor:
        n = video.shape[2]
        if n < 1:
            raise ValueError("encode_video needs at least one frame")
        padded = self.frames(self.latent_frames(n))
        if padded > n:
            video = torch.cat([video, video[:, :, -1:].expand(-1, -1, padded - n, -1, -1)], 2)
        latents = self.model.encode(video.to(self.model.dtype)).latent_dist.mode()
        mean, std = self.latent_stats.to(latents)
        return (latents - mean) / std

    def decode_video(self, latents: Tensor) -> Tensor:
        mean, std = self.latent_stats.to(latents)
        return self.model.decode((latents * std + mean).to(self.model.dtype)).sample
