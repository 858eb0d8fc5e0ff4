"""AnimateDiff's temporal transformer, extended with EMO's motion frames and speed cross-attention."""

from __future__ import annotations

import re
from functools import lru_cache

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from einops import rearrange
from torch import Tensor, nn

from emo_lightning.components.base import TemporalBlock
from emo_lightning.components.few_key_attention import few_key_attention, folds
from emo_lightning.registry import register


@lru_cache(maxsize=2)
def _motion_adapter(pretrained: str) -> nn.Module:
    from diffusers import MotionAdapter

    return MotionAdapter.from_pretrained(pretrained)


def adapter_key(location: str) -> str:
    """Map a UNet location (``up_blocks.2.attentions.1``, ``mid_block``) to a MotionAdapter module path."""
    if location == "mid_block":
        return "mid_block.motion_modules.0"
    match = re.fullmatch(r"(down_blocks|up_blocks)\.(\d+)\.(?:attentions|resnets)\.(\d+)", location)
    if match is None:
        raise ValueError(f"no AnimateDiff motion module corresponds to UNet location {location!r}")
    return f"{match[1]}.{match[2]}.motion_modules.{match[3]}"


@register("temporal_block", "animatediff", tiny={"num_attention_heads": 2, "norm_num_groups": 4, "speed_heads": 2})
class AnimateDiffTemporalBlock(TemporalBlock):
    """Temporal self-attention over [motion frames, frames] (AnimateDiff layout), then speed attention.

    ``pretrained`` (a MotionAdapter hub id / folder) loads the motion module matching ``location``;
    otherwise the output projection starts at zero so the block starts as the identity. The speed
    cross-attention always starts at zero: speed layers are trained in stage 3.
    """

    def __init__(self, channels: int, speed_dim: int, location: str = "", num_attention_heads: int = 8,
                 num_layers: int = 1, norm_num_groups: int = 32, max_seq_length: int = 32,
                 speed_heads: int = 8, pretrained: str | None = None):
        super().__init__()
        self.channels, self.speed_dim, self.location = channels, speed_dim, location
        self.motion = AnimateDiffTransformer3D(
            num_attention_heads=num_attention_heads, attention_head_dim=channels // num_attention_heads,
            in_channels=channels, num_layers=num_layers, norm_num_groups=norm_num_groups,
            attention_bias=False, activation_fn="geglu", positional_embeddings="sinusoidal",
            num_positional_embeddings=max_seq_length, double_self_attention=True,
        )
        if pretrained:
            state = _motion_adapter(pretrained).get_submodule(adapter_key(location)).state_dict()
            self.motion.load_state_dict(state)
        else:
            nn.init.zeros_(self.motion.proj_out.weight)
            nn.init.zeros_(self.motion.proj_out.bias)
        self.speed_norm = nn.LayerNorm(channels)
        self.speed_attn = Attention(query_dim=channels, cross_attention_dim=speed_dim, heads=speed_heads,
                                    dim_head=channels // speed_heads)
        nn.init.zeros_(self.speed_attn.to_out[0].weight)
        nn.init.zeros_(self.speed_attn.to_out[0].bias)

    def forward(self, x: Tensor, motion: Tensor | None = None, speed: Tensor | None = None) -> Tensor:
        b, _, f, h, w = x.shape
        frames = x if motion is None else torch.cat([motion.to(x.dtype), x], dim=2)
        out = self._temporal(frames, keep=f)
        if speed is None:
            return out
        tokens = rearrange(out, "b c f h w -> b (h w) f c")
        tokens = tokens + self._speed_attention(self.speed_norm(tokens), speed.to(x.dtype))
        return rearrange(tokens, "b (h w) f c -> b c f h w", h=h, w=w)

    def _temporal(self, frames: Tensor, keep: int) -> Tensor:
        """AnimateDiff's transformer over all of ``frames`` (B, C, T, h, w) → its output for the last ``keep``.

        The same as running ``self.motion`` and dropping the motion frames' outputs, without computing them: in the
        last transformer block the motion frames are only keys and values of the second self-attention, so their
        queries, feed-forward and output projection are skipped.
        """
        m = self.motion
        b, c, total, h, w = frames.shape
        hidden = rearrange(m.norm(frames), "b c t h w -> (b h w) t c")
        hidden = m.proj_in(hidden)
        *blocks, last = m.transformer_blocks
        for block in blocks:
            hidden = block(hidden)
        normed = last.pos_embed(last.norm1(hidden))
        hidden = hidden + last.attn1(normed)
        normed = last.pos_embed(last.norm2(hidden))
        hidden = hidden[:, total - keep:] + last.attn2(normed[:, total - keep:], encoder_hidden_states=normed)
        hidden = hidden + last.ff(last.norm3(hidden))
        hidden = rearrange(m.proj_out(hidden), "(b h w) t c -> b c t h w", b=b, h=h, w=w)
        return hidden + frames[:, :, total - keep:]

    def _speed_attention(self, tokens: Tensor, speed: Tensor) -> Tensor:
        """Cross-attention of ``tokens`` (B, hw, F, C) along the frame axis to ``speed`` (B, F, speed_dim).

        Every position of a video attends to the same speed tokens: their keys and values are projected once
        per video, not once per position, and when they are few the query and output projections are folded onto
        them (:mod:`~emo_lightning.components.few_key_attention`).
        """
        attn = self.speed_attn
        if folds(attn, speed.shape[1]):
            key, value = (proj(speed).unsqueeze(1) for proj in (attn.to_k, attn.to_v))
            return few_key_attention(attn, tokens, key, value)
        heads = attn.heads
        query = rearrange(attn.to_q(tokens), "b n f (a d) -> b n a f d", a=heads)
        key, value = (rearrange(proj(speed), "b f (a d) -> b 1 a f d", a=heads).expand(-1, query.shape[1], -1, -1, -1)
                      for proj in (attn.to_k, attn.to_v))
        out = F.scaled_dot_product_attention(query, key, value)
        return attn.to_out[0](rearrange(out, "b n a f d -> b n f (a d)"))
