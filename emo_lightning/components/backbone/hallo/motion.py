"""Hallo's motion module: AnimateDiff's temporal transformer, normalised frame by frame, run over
[motion frames, frames] along the frame axis."""

from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from einops import rearrange
from torch import Tensor, nn


class HalloTemporalLayer(nn.Module):
    """Pre-norm temporal self-attentions (each adding its own positional table to its normalised input), then a
    GEGLU feed-forward. Tokens are (positions, frames, channels)."""

    def __init__(self, dim: int, heads: int, attentions: int, max_frames: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False) for _ in range(attentions))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(attentions))
        for i in range(attentions):  # Hallo's tables are weights of the checkpoint, not recomputed
            self.register_buffer(f"positions_{i}", torch.zeros(1, max_frames, dim))
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor) -> Tensor:
        frames = tokens.shape[1]
        for i, (attention, norm) in enumerate(zip(self.attention_blocks, self.norms, strict=True)):
            tokens = tokens + attention(norm(tokens) + getattr(self, f"positions_{i}")[:, :frames])
        return tokens + self.ff(self.ff_norm(tokens))


class HalloMotionModule(nn.Module):
    """(B, C, T, h, w) → (B, C, T, h, w): GroupNorm per frame, linear in, temporal layers, linear out, residual."""

    def __init__(self, channels: int, heads: int = 8, layers: int = 1, attentions: int = 2, max_frames: int = 32,
                 norm_groups: int = 32, dim_div: int = 1):
        super().__init__()
        dim = heads * (channels // heads // dim_div)
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, dim)
        self.transformer_blocks = nn.ModuleList(
            HalloTemporalLayer(dim, heads, attentions, max_frames) for _ in range(layers))
        self.proj_out = nn.Linear(dim, channels)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        tokens = rearrange(self.proj_in(rearrange(self.norm(frames), "n c h w -> n h w c")),
                           "(b t) h w c -> (b h w) t c", b=b)
        for layer in self.transformer_blocks:
            tokens = layer(tokens)
        out = rearrange(self.proj_out(tokens), "(b h w) t c -> b c t h w", b=b, h=h)
        return out + x
