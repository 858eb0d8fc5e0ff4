"""A temporal block without attention: depthwise 1-D convolutions along the frame axis.

Cheaper than AnimateDiff's temporal attention (linear in the number of frames), useful on small GPUs and as
a template for your own component. Select it with
``'~model.temporal_block' '+model.temporal_block={name: conv1d}'``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from emo_lightning.components.base import TemporalBlock


class TemporalConvBlock(TemporalBlock):
    """GroupNorm → depthwise conv over frames (kernel ``kernel_size``) → SiLU → pointwise conv, residual.

    Motion frames are prepended along the frame axis, so the first frames of a clip see the previous clip.
    Speed modulates the output through a zero-initialised scale/shift (FiLM) predicted from the speed tokens.
    """

    def __init__(self, channels: int, speed_dim: int, location: str = "", kernel_size: int = 3,
                 norm_num_groups: int = 32):
        super().__init__()
        self.channels, self.speed_dim = channels, speed_dim
        self.norm = nn.GroupNorm(min(norm_num_groups, channels), channels)
        self.depthwise = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.pointwise = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.pointwise.weight)
        nn.init.zeros_(self.pointwise.bias)
        self.speed_film = nn.Linear(speed_dim, 2 * channels)
        nn.init.zeros_(self.speed_film.weight)
        nn.init.zeros_(self.speed_film.bias)

    @classmethod
    def tiny_config(cls) -> dict:
        return {"norm_num_groups": 4}

    def forward(self, x: Tensor, motion: Tensor | None = None, speed: Tensor | None = None) -> Tensor:
        b, c, f, h, w = x.shape
        frames = x if motion is None else torch.cat([motion.to(x.dtype), x], dim=2)
        y = rearrange(self.norm(frames), "b c f h w -> (b h w) c f")
        y = self.pointwise(torch.nn.functional.silu(self.depthwise(y)))
        y = rearrange(y, "(b h w) c f -> b c f h w", b=b, h=h, w=w)[:, :, -f:]
        if speed is not None:
            scale, shift = rearrange(self.speed_film(speed.to(x.dtype)), "b f c -> b c f 1 1").chunk(2, dim=1)
            y = y * (1 + scale) + shift
        return x + y
