"""Hallo's face locator: the face-region image encoded to the width of the denoiser's first block."""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class HalloFaceLocator(nn.Module):
    """A face-region image (B, C, F, H, W) → features (B, out_channels, F, H/2^k, W/2^k), frame by frame.

    A 3×3 input conv, then per width in ``widths[1:]`` a 3×3 conv keeping the width and a stride-2 3×3 conv to the
    next width (SiLU after each), then a 3×3 output conv. Hallo adds the result to the denoiser's features right
    after its input conv (not to the noisy latent), so ``out_channels`` is the UNet's first block width.
    """

    def __init__(self, out_channels: int = 320, in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for width, wider in zip(widths[:-1], widths[1:], strict=True):
            self.blocks.append(nn.Conv2d(width, width, 3, padding=1))
            self.blocks.append(nn.Conv2d(width, wider, 3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, region: Tensor) -> Tensor:
        frames = region.shape[2]
        x = F.silu(self.conv_in(rearrange(region, "b c f h w -> (b f) c h w")))
        for conv in self.blocks:
            x = F.silu(conv(x))
        return rearrange(self.conv_out(x), "(b f) c h w -> b c f h w", f=frames)
