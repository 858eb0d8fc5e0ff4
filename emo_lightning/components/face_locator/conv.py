"""EMO's face locator: a few light conv layers, zero-initialised so it starts as a no-op."""

from __future__ import annotations

import math

from torch import Tensor, nn

from emo_lightning.components.base import FaceLocator
from emo_lightning.registry import register


def conv_encoder(in_channels: int, channels: int, downsample: int, latent_channels: int) -> nn.Sequential:
    """Image → conv 3×3 → log2(downsample) stride-2 convs (SiLU) → zero-initialised conv to the latent."""
    if downsample < 1 or downsample & (downsample - 1):
        raise ValueError(f"face locator downsample must be a power of two, got {downsample}")
    layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.SiLU()]
    for _ in range(int(math.log2(downsample))):
        layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.SiLU()]
    out = nn.Conv2d(channels, latent_channels, 3, padding=1)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    return nn.Sequential(*layers, out)


@register("face_locator", "conv", tiny={"channels": 8})
class ConvFaceLocator(FaceLocator):
    """The face mask through :func:`conv_encoder`."""

    def __init__(self, latent_channels: int = 4, downsample: int = 8, channels: int = 32):
        super().__init__()
        self.latent_channels, self.downsample = latent_channels, downsample
        self.net = conv_encoder(1, channels, downsample, latent_channels)

    def forward(self, mask: Tensor, landmark_map: Tensor | None = None) -> Tensor:
        return self.net(mask.to(self.net[0].weight.dtype))
