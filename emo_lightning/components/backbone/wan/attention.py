"""EMO's attention paths on diffusers' Wan blocks: attention processors and one added module.

* :class:`PrefixSelfAttention` replaces a block's self-attention processor: the block's own tokens attend to
  themselves and to prefix keys/values (the reference's and the motion frames', computed once by a prefix pass),
  and a prefix pass records its keys/values. What it needs per call rides in the ``rotary_emb`` argument that
  ``WanTransformerBlock`` hands to ``attn1`` unchanged (:class:`SelfAttentionInputs`), so nothing is stored on
  the modules between calls and activation checkpointing replays it exactly.
* :class:`NullTextAttention` replaces the text cross-attention's processor: EMO has no text, the context is one
  fixed token, and attention over a single key is its value (softmax = 1): ``to_out(to_v(context))``, exactly
  what ``WanAttnProcessor`` computes then, without the query projection.
* :class:`AudioAttention`: cross-attention from each latent frame's tokens to the audio tokens of the video frames
  it covers, zero-initialised output (a pretrained DiT is unchanged until it learns).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor, WanRotaryPosEmbed
from torch import Tensor, nn


def rotary_embedding(rope: WanRotaryPosEmbed, frame_positions: Tensor, height: int, width: int
                     ) -> tuple[Tensor, Tensor]:
    """Wan's 3-D RoPE (cos, sin), each ``(1, F·height·width, 1, head_dim)``, for latent frames at any integer
    ``frame_positions`` (negative ones for prefixes before the clip); ``height`` × ``width`` patches per frame.
    For positions 0 … F−1 it equals ``rope(hidden_states)``."""
    device = frame_positions.device
    axes = [(rope.t_dim, frame_positions), (rope.h_dim, torch.arange(height, device=device)),
            (rope.w_dim, torch.arange(width, device=device))]
    grid = (len(frame_positions), height, width)
    cos, sin = [], []
    for axis, (dim, positions) in enumerate(axes):
        c, s = get_1d_rotary_pos_embed(dim, positions.double(), use_real=True, repeat_interleave_real=True,
                                       freqs_dtype=torch.float64)
        shape = [1, 1, 1, dim]
        shape[axis] = -1
        cos.append(c.view(shape).expand(*grid, dim))
        sin.append(s.view(shape).expand(*grid, dim))
    return (torch.cat(cos, -1).reshape(1, -1, 1, rope.attention_head_dim).float(),
            torch.cat(sin, -1).reshape(1, -1, 1, rope.attention_head_dim).float())


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Interleaved-pair rotation, as ``WanAttnProcessor`` applies RoPE."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2).type_as(x)


@dataclass
class SelfAttentionInputs:
    """What :class:`PrefixSelfAttention` needs in one pass, for every layer.

    ``prefix_keys`` / ``prefix_values``: ``(B, layers, L, heads, head_dim)`` (rotated keys), ``prefix_mask``:
    ``(B, L)`` bool, True where a prefix token is attended to (None: all are); ``record``: a list that a prefix pass
    collects each layer's ``(keys, values)`` in.
    """

    cos: Tensor
    sin: Tensor
    prefix_keys: Tensor | None = None
    prefix_values: Tensor | None = None
    prefix_mask: Tensor | None = None
    record: list[tuple[Tensor, Tensor]] | None = None


class PrefixSelfAttention:
    """``WanAttnProcessor`` for self-attention (RMS-normed q/k, RoPE), with prefix keys/values prepended."""

    def __init__(self, layer: int):
        self.layer = layer

    def __call__(self, attn: WanAttention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, rotary_emb: SelfAttentionInputs | None = None) -> Tensor:
        if not isinstance(rotary_emb, SelfAttentionInputs):
            raise TypeError("this Wan block belongs to an EMO backbone: call it through WanBackbone")
        inputs = rotary_emb
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        query, key = _rotate(query, inputs.cos, inputs.sin), _rotate(key, inputs.cos, inputs.sin)
        if inputs.record is not None:
            inputs.record.append((key, value))
        mask = None
        if inputs.prefix_keys is not None:
            key = torch.cat([inputs.prefix_keys[:, self.layer].to(key.dtype), key], 1)
            value = torch.cat([inputs.prefix_values[:, self.layer].to(value.dtype), value], 1)
            if inputs.prefix_mask is not None:
                own = inputs.prefix_mask.new_ones(query.shape[0], query.shape[1])
                mask = torch.cat([inputs.prefix_mask, own], 1)[:, None, None, :]
        out = dispatch_attention_fn(query, key, value, attn_mask=mask)
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


class NullTextAttention:
    """The text cross-attention over one context token: its value, the same for every query."""

    def __call__(self, attn: WanAttention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, rotary_emb: object = None) -> Tensor:
        if encoder_hidden_states is None or encoder_hidden_states.shape[1] != 1:
            raise ValueError("NullTextAttention takes exactly one context token")
        return attn.to_out[1](attn.to_out[0](attn.to_v(encoder_hidden_states))).type_as(hidden_states)


class AudioAttention(nn.Module):
    """Pre-norm cross-attention from a latent frame's tokens to its audio tokens, output zero-initialised.

    ``forward(hidden (B, F', n, dim), audio (B, F', A, dim)) -> (B, F', n, dim)``: the residual to add.
    """

    def __init__(self, dim: int, heads: int, eps: float = 1e-6):
        super().__init__()
        self.norm = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.attention = WanAttention(dim, heads, dim // heads, eps, cross_attention_dim_head=dim // heads,
                                      processor=WanAttnProcessor())
        nn.init.zeros_(self.attention.to_out[0].weight)
        nn.init.zeros_(self.attention.to_out[0].bias)

    def forward(self, hidden: Tensor, audio: Tensor) -> Tensor:
        b, f = hidden.shape[:2]
        x = self.norm(hidden.flatten(0, 1).float()).type_as(hidden)
        return self.attention(x, audio.flatten(0, 1).to(x.dtype)).unflatten(0, (b, f))
