"""A small convolutional network with fixed random weights: a weight-free feature space for FID/KID.

Random-network features separate real from distorted images (blur, noise, colour shifts) well enough to compare
models against each other with the same seed, but their numbers are not comparable with the Inception FID of
papers. The weights come from ``seed`` alone, so every run and every DDP rank gets the same network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emo_lightning.components.base import FrameFeatures
from emo_lightning.registry import register


def random_conv_stack(convolution: type[nn.Module], channels: tuple[int, ...], num_features: int, seed: int,
                      stride: int | tuple[int, ...] = 2) -> nn.Sequential:
    """Conv → LeakyReLU blocks (3×…×3 kernels, ``stride``), global average pooling and a linear map, all with
    weights drawn from ``seed``; frozen."""
    layers: list[nn.Module] = []
    previous = 3
    for width in channels:
        layers += [convolution(previous, width, 3, stride=stride, padding=1), nn.LeakyReLU(0.2)]
        previous = width
    pool = nn.AdaptiveAvgPool2d(1) if convolution is nn.Conv2d else nn.AdaptiveAvgPool3d(1)
    network = nn.Sequential(*layers, pool, nn.Flatten(), nn.Linear(previous, num_features))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            fan_in = parameter[0].numel() if parameter.ndim > 1 else 1
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / fan_in**0.5)
    return network.requires_grad_(False)


@register("frame_features", "random_conv", tiny={"num_features": 8, "channels": [4, 8], "size": 32})
class RandomConvFeatures(FrameFeatures):
    """Frames resized to ``size``², in [-1, 1], through :func:`random_conv_stack`."""

    def __init__(self, num_features: int = 64, channels: list[int] = (16, 32, 64), size: int = 128, seed: int = 0):
        super().__init__()
        self.num_features, self.size = num_features, size
        self.network = random_conv_stack(nn.Conv2d, tuple(channels), num_features, seed)

    def forward(self, images: Tensor) -> Tensor:
        x = F.interpolate(images.float() / 127.5 - 1, size=(self.size, self.size), mode="bilinear",
                          align_corners=False, antialias=True)
        return self.network(x)
