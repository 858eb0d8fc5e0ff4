"""A small 3-D convolutional network with fixed random weights: a weight-free feature space for FVD (numbers
comparable between models scored with the same seed, not with the I3D FVD of papers)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from emo_lightning.components.base import VideoFeatures
from emo_lightning.components.frame_features.random_conv import random_conv_stack
from emo_lightning.registry import register


@register("video_features", "random_conv", tiny={"num_features": 8, "channels": [4, 8], "size": 32})
class RandomConv3dFeatures(VideoFeatures):
    """Clips resized to ``size``² per frame, in [-1, 1], through 3-D convolutions (stride 1 in time, 2 in space)."""

    def __init__(self, num_features: int = 64, channels: list[int] = (16, 32, 64), size: int = 64, seed: int = 0):
        super().__init__()
        self.num_features, self.size = num_features, size
        self.network = random_conv_stack(nn.Conv3d, tuple(channels), num_features, seed, stride=(1, 2, 2))

    def forward(self, videos: Tensor) -> Tensor:
        n, c, f = videos.shape[:3]
        frames = videos.transpose(1, 2).reshape(n * f, c, *videos.shape[-2:]).float() / 127.5 - 1
        frames = F.interpolate(frames, size=(self.size, self.size), mode="bilinear", align_corners=False,
                               antialias=True)
        return self.network(frames.reshape(n, f, c, self.size, self.size).transpose(1, 2))
