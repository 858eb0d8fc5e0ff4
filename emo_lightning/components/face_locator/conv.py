"""EMO's face locator: a few light conv layers, zero-initialised so it starts as a no-op."""

from __future__ import annotations

import math

from torch import Tensor, nn

from emo_lightning.components.base import FaceLocator
from emo_lightning.registry import register


@register("face_locator", "conv", tiny={"channels": 8})
class ConvFaceLocator(FaceLocator):
    """Mask → conv 3×3 → log2(downsample) stride-2 convs (SiLU) → zero-initialised conv to the latent."""

    def __init__(self, latent_channels: int = 4, downsample: int = 8, channels: int = 32):
        super().__init__()
        if downsample < 1 or downsample & (downsample - 1):
            raise ValueError(f"face locator downsample must be a power of two, got {downsample}")
        self.latent_channels, self.downsample = latent_channels, downsample
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.SiLU()]
        for _ in range(int(math.log2(downsample))):
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.SiLU()]
        out = nn.Conv2d(channels, latent_channels, 3, padding=1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*layers, out)

    def forward(self, mask: Tensor) -> Tensor:
        return self.net(mask.to(self.net[0].weight.dtype))
