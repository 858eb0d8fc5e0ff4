"""A weight-free "VAE": pixel-unshuffle. Lets tiny models train on a CPU without an autoencoder."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from emo_lightning.components.base import VAE
from emo_lightning.registry import register


@register("vae", "pixel", tiny={"downsample": 2})
class PixelUnshuffleVAE(VAE):
    """``(B, 3, H, W) -> (B, 3·f², H/f, W/f)`` by pixel-unshuffle with factor f; decode is the inverse."""

    def __init__(self, downsample: int = 2):
        super().__init__()
        self.downsample = downsample
        self.latent_channels = 3 * downsample**2

    def encode(self, images: Tensor) -> Tensor:
        return F.pixel_unshuffle(images, self.downsample)

    def decode(self, latents: Tensor) -> Tensor:
        return F.pixel_shuffle(latents, self.downsample)
