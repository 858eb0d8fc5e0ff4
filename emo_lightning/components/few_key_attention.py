"""Cross-attention to a few keys, with the query and output projections folded onto the keys.

EMO's audio-attention (a few audio tokens per frame) and speed attention (one speed token per frame) attend from
thousands of positions to a handful of keys. Per head ``a``, ``softmax(x W_q^a k_a^T) v_a W_out^a`` is computed as
``softmax(x M_a) V_a`` with ``M_a = W_q^a k_a^T`` (C × L) and ``V_a = v_a W_out^a`` (L × C): each position then costs
2·C·heads·L multiply-adds instead of the two C × C projections plus the attention itself. The result is the same
attention (up to rounding), with or without gradients.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from einops import rearrange
from torch import Tensor, nn


def plain_attention(attn: Attention) -> bool:
    """An attention layer as SD's are: no norms around the projections, no residual or rescaling inside."""
    return (attn.spatial_norm is None and attn.group_norm is None and attn.norm_q is None and attn.norm_k is None
            and not attn.residual_connection and attn.rescale_output_factor == 1.0)


def folds(attn: Attention, num_keys: int) -> bool:
    """Whether ``attn`` can attend to ``num_keys`` keys folded, and doing so is cheaper: a plain layer whose query and
    output projections are ``nn.Linear`` itself (not wrapped by LoRA or quantised), without a query bias or a norm of
    the context, and fewer keys over all heads than the layer's inner width."""
    linear = type(attn.to_q) is nn.Linear and type(attn.to_out[0]) is nn.Linear
    return (linear and plain_attention(attn) and attn.norm_cross is None and attn.to_q.bias is None
            and attn.heads * num_keys < attn.inner_dim)


def few_key_attention(attn: Attention, hidden: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """``attn``'s multi-head attention from ``hidden`` (..., N, C) to ``key``/``value`` (..., L, inner), which are
    already projected by ``to_k``/``to_v``; leading dimensions broadcast (a video's keys for all its positions).
    Returns the layer's output (..., N, C_out), output projection included."""
    heads = attn.heads
    key = rearrange(key, "... l (a d) -> ... l a d", a=heads)
    value = rearrange(value, "... l (a d) -> ... l a d", a=heads)
    w_query = rearrange(attn.to_q.weight, "(a d) c -> a d c", a=heads)
    w_out = rearrange(attn.to_out[0].weight, "o (a d) -> a d o", a=heads)
    scores_of = torch.einsum("...lad,adc->...cal", key, w_query).flatten(-2) * attn.scale  # (..., C, heads·L)
    outputs_of = torch.einsum("...lad,ado->...alo", value, w_out).flatten(-3, -2)  # (..., heads·L, C_out)
    scores = (hidden @ scores_of).unflatten(-1, (heads, key.shape[-3]))
    out = scores.softmax(dim=-1).flatten(-2) @ outputs_of
    if attn.to_out[0].bias is not None:
        out = out + attn.to_out[0].bias.to(out.dtype)
    return attn.to_out[1](out)
