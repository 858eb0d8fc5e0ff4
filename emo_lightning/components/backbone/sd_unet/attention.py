"""Attention processors that turn SD's attention layers into EMO's.

* ReferenceNet ``attn1``: records the hidden states entering the layer (the reference tokens).
* Backbone ``attn1`` → *reference-attention*: self-attention over the layer's own tokens concatenated
  with the ReferenceNet tokens recorded at the same layer.
* Backbone ``attn2`` → *audio-attention*: SD's text cross-attention, fed the audio tokens instead (a few per frame:
  attended with the projections folded onto them, :mod:`~emo_lightning.components.few_key_attention`).
* ReferenceNet ``attn2``: off (the ReferenceNet has no audio or text condition).

All of them delegate the attention itself to diffusers' ``AttnProcessor2_0``, except reference-attention in
SD's plain layers, which projects the reference tokens itself (see :class:`ReferenceAttnProcessor`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import rearrange
from torch import Tensor

from emo_lightning.components.backbone.sd_unet.state import UNetState
from emo_lightning.components.few_key_attention import few_key_attention, folds, plain_attention

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
    """Reference-attention. The reference tokens' keys and values are projected per video, not per frame, and
    while a video is generated (no gradients, the same reference tensor, unchanged weights) once for all its
    denoising steps."""

    def __init__(self, name: str, state: UNetState):
        super().__init__(name, state)
        self._cache: tuple[Tensor, tuple, Tensor, Tensor] | None = None

    def __call__(self, attn: Attention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        reference = self.state.reference.get(self.name) if self.state.reference else None
        if reference is None:
            return _sdpa(attn, hidden_states, None, attention_mask)
        per_video = hidden_states.shape[0] // reference.shape[0]  # reference rows are per video, hidden per frame
        if attention_mask is not None or not plain_attention(attn) or hidden_states.ndim != 3:
            reference = reference.to(hidden_states.dtype).repeat_interleave(per_video, dim=0)
            return _sdpa(attn, hidden_states, torch.cat([hidden_states, reference], dim=1), attention_mask)
        ref_key, ref_value = self._reference_keys(attn, reference)
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        key = torch.cat([key, ref_key.to(key.dtype).repeat_interleave(per_video, dim=0)], dim=1)
        value = torch.cat([value, ref_value.to(value.dtype).repeat_interleave(per_video, dim=0)], dim=1)
        query, key, value = (rearrange(x, "b l (a d) -> b a l d", a=attn.heads) for x in (query, key, value))
        out = rearrange(F.scaled_dot_product_attention(query, key, value), "b a l d -> b l (a d)")
        return attn.to_out[1](attn.to_out[0](out))

    def _reference_keys(self, attn: Attention, reference: Tensor) -> tuple[Tensor, Tensor]:
        if torch.is_grad_enabled():
            return attn.to_k(reference), attn.to_v(reference)
        device = reference.device.type
        stamp = (_version(reference), _version(attn.to_k.weight), _version(attn.to_v.weight),
                 torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None)
        if self._cache is None or self._cache[0] is not reference or self._cache[1] != stamp:
            self._cache = (reference, stamp, attn.to_k(reference), attn.to_v(reference))
        return self._cache[2], self._cache[3]


def _version(tensor: Tensor) -> int | None:
    """The in-place update counter; inference-mode tensors (``emo predict`` runs in inference mode) keep none, and
    are never updated in place while generation runs."""
    return None if tensor.is_inference() else tensor._version


class AudioAttnProcessor(_Processor):
    def __call__(self, attn: Attention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        if not self.state.audio:
            return torch.zeros_like(hidden_states)  # the block adds it as a residual: layer skipped
        if attention_mask is None and hidden_states.ndim == 3 and folds(attn, encoder_hidden_states.shape[1]):
            return few_key_attention(attn, hidden_states, attn.to_k(encoder_hidden_states),
                                     attn.to_v(encoder_hidden_states))
        return _sdpa(attn, hidden_states, encoder_hidden_states, attention_mask)


class DisabledProcessor:
    """An attention layer switched off: contributes nothing to the residual stream."""

    def __call__(self, attn: Attention, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        return torch.zeros_like(hidden_states)
