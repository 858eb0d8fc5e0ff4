"""EchoMimic-style face locator: the face mask and the facial landmarks drawn as a map, per video frame."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from emo_lightning.components.base import FaceLocator
from emo_lightning.components.face_locator.conv import conv_encoder
from emo_lightning.components.face_locator.landmark_map import LandmarkMap
from emo_lightning.registry import register


@register("face_locator", "landmarks", tiny={"channels": 8})
class LandmarkFaceLocator(FaceLocator):
    """(mask, landmark map) of every frame as two channels through :func:`~.conv.conv_encoder`: a residual per frame,
    so the head pose the landmarks draw can change from frame to frame. Without a map (or where a frame's face was
    not found) the map channel is empty and only the mask speaks.

    ``include_lips`` / ``line_width``: how the map is drawn (:class:`~.landmark_map.LandmarkMap`; lips are left out by
    default so that the audio alone moves the mouth).
    """

    def __init__(self, latent_channels: int = 4, downsample: int = 8, channels: int = 32, include_lips: bool = False,
                 line_width: float = 0.01):
        super().__init__()
        self.latent_channels, self.downsample = latent_channels, downsample
        self.landmark_style = LandmarkMap(include_lips=include_lips, line_width=line_width)
        self.net = conv_encoder(2, channels, downsample, latent_channels)

    def forward(self, mask: Tensor, landmark_map: Tensor | None = None) -> Tensor:
        dtype = self.net[0].weight.dtype
        if landmark_map is None:
            return self.net(torch.cat([mask, torch.zeros_like(mask)], 1).to(dtype))
        frames = landmark_map.shape[2]
        masks = mask[:, :, None].expand(-1, -1, frames, -1, -1)
        stacked = rearrange(torch.cat([masks, landmark_map.to(mask.dtype)], 1), "b c f h w -> (b f) c h w")
        return rearrange(self.net(stacked.to(dtype)), "(b f) c h w -> b c f h w", f=frames)
