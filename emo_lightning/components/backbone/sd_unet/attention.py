"""Attention processors that turn SD's attention layers into EMO's.

* ReferenceNet ``attn1``: records the hidden states entering the layer (the reference tokens).
* Backbone ``attn1`` → *reference-attention*: self-attention over the layer's own tokens concatenated
  with the ReferenceNet tokens recorded at the same layer.
* Backbone ``attn2`` → *audio-attention*: SD's text cross-attention, fed the audio tokens instead.
* ReferenceNet ``attn2``: off (the ReferenceNet has no audio or text condition).

All of them delegate the attention itself to diffusers' ``AttnProcessor2_0``.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import Tensor

from emo_lightning.components.backbone.sd_unet.state import UNetState

_sdpa = AttnProcessor2_0()


class _Processor:
    def __init__(self, name: str, state: UNetState):
        self.name, self.state = name, state


class CaptureReferenceProcessor(_Processor):
    def __call__(self, attn: Attention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        if self.state.capture == "reference":
            self.state.captured[self.name] = hidden_states
        return _sdpa(attn, hidden_states, encoder_hidden_states, attention_mask)


class ReferenceAttnProcessor(_Processor):
    def __call__(self, attn: Attention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        reference = self.state.reference.get(self.name) if self.state.reference else None
        if reference is None:
            return _sdpa(attn, hidden_states, None, attention_mask)
        # reference rows are per video; hidden rows are per (video, frame)
        reference = reference.to(hidden_states.dtype).repeat_interleave(
            hidden_states.shape[0] // reference.shape[0], dim=0)
        return _sdpa(attn, hidden_states, torch.cat([hidden_states, reference], dim=1), attention_mask)


class AudioAttnProcessor(_Processor):
    def __call__(self, attn: Attention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        if not self.state.audio:
            return torch.zeros_like(hidden_states)  # the block adds it as a residual: layer skipped
        return _sdpa(attn, hidden_states, encoder_hidden_states, attention_mask)


class DisabledProcessor:
    """An attention layer switched off: contributes nothing to the residual stream."""

    def __call__(self, attn: Attention, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        return torch.zeros_like(hidden_states)
