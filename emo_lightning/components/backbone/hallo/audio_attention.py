"""Hallo's hierarchical audio-attention: three cross-attentions to the audio tokens, masked to the full / face /
lip regions, each through its own (zero-initialised) 1×1 conv, weighted by the region weights."""

from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from einops import rearrange
from torch import Tensor, nn

REGIONS = ("full", "face", "lip")


class HalloRegionBlock(nn.Module):
    """Self-attention, the three region cross-attentions (``attn2_0/1/2`` = full, face, lip), feed-forward; all
    pre-norm residuals. Tokens are (B·F, h·w, dim)."""

    def __init__(self, dim: int, heads: int, audio_dim: int):
        super().__init__()
        for region in REGIONS:
            conv = nn.Conv2d(dim, dim, 1)
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
            setattr(self, f"zero_conv_{region}", conv)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        for i in range(len(REGIONS)):
            setattr(self, f"attn2_{i}", Attention(query_dim=dim, cross_attention_dim=audio_dim, heads=heads,
                                                  dim_head=dim // heads, bias=False))
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, audio: Tensor, masks: Tensor, weights: Tensor, height: int) -> Tensor:
        """``audio`` (B·F, n, audio_dim); ``masks`` (3, B·F, h·w) for full, face, lip; ``weights`` (3,)."""
        tokens = tokens + self.attn1(self.norm1(tokens))
        normed = self.norm2(tokens)
        regions = []
        for i, region in enumerate(REGIONS):
            attended = getattr(self, f"attn2_{i}")(normed, encoder_hidden_states=audio) * masks[i][..., None]
            conv = getattr(self, f"zero_conv_{region}")
            grid = rearrange(attended, "n (h w) c -> n c h w", h=height)
            regions.append(weights[i] * rearrange(conv(grid), "n c h w -> n (h w) c"))
        tokens = regions[0] + regions[1] + regions[2] + tokens
        return tokens + self.ff(self.norm3(tokens))


class HalloAudioAttention(nn.Module):
    """(B, C, F, h, w) → (B, C, F, h, w): GroupNorm, 1×1 conv in (to ``dim``, which Hallo sets from the block's
    input width), one :class:`HalloRegionBlock`, 1×1 conv out, residual."""

    def __init__(self, channels: int, dim: int, heads: int, audio_dim: int, norm_groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, dim, 1)
        self.transformer_blocks = nn.ModuleList([HalloRegionBlock(dim, heads, audio_dim)])
        self.proj_out = nn.Conv2d(dim, channels, 1)

    def forward(self, x: Tensor, audio: Tensor, masks: Tensor, weights: Tensor) -> Tensor:
        """``audio`` (B, F, n, audio_dim); ``masks`` (3, B·F, h·w)."""
        b, _, f, h, w = x.shape
        frames = rearrange(x, "b c f h w -> (b f) c h w")
        tokens = rearrange(self.proj_in(self.norm(frames)), "n c h w -> n (h w) c")
        for block in self.transformer_blocks:
            tokens = block(tokens, audio.flatten(0, 1), masks, weights, h)
        out = self.proj_out(rearrange(tokens, "n (h w) c -> n c h w", h=h)) + frames
        return rearrange(out, "(b f) c h w -> b c f h w", b=b)


def region_masks(masks: list[Tensor], branches: int, frames: int) -> dict[int, Tensor]:
    """Per-level (full, face, lip) masks, each (B or 1, h·w) → {h·w: (3, branches·frames, h·w)}, repeated over
    the frames of every branch as Hallo does."""
    out = {}
    for level in masks:
        stacked = torch.stack([m.expand(branches, -1) for m in level])  # (3, B, hw)
        out[stacked.shape[-1]] = stacked.repeat_interleave(frames, dim=1)
    return out
