"""Hallo's reference path as attention processors on diffusers' UNets.

The reference UNet's spatial self-attentions record the (normalised) tokens entering them: the bank. The denoising
UNet's matching self-attention (the same module path) attends over its own tokens concatenated with the bank's
source-image tokens; the bank's motion-frame tokens feed the motion module that follows the attention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import Tensor

_sdpa = AttnProcessor2_0()


@dataclass
class ReferenceBank:
    """Reference tokens per transformer block path, each (B, n, L, C): B guidance branches, n reference images
    (the source, then the motion frames). ``dtype``, when set, is the precision the tokens are kept in (readers
    cast them back to their own): Hallo's pipeline hands its denoising UNet a float16 copy of the bank."""

    tokens: dict[str, Tensor] = field(default_factory=dict)
    recording: bool = False
    dtype: torch.dtype | None = None

    def source(self, name: str) -> Tensor:
        return self.tokens[name][:, 0]

    def motion_frames(self, name: str) -> Tensor:
        return self.tokens[name][:, 1:]


@dataclass
class ReadState:
    """What the denoising UNet's reference-attention reads during one forward."""

    bank: ReferenceBank | None = None
    frames: int = 1
    reads_reference: Tensor | None = None  # (B,) bool: branches whose self-attention sees the reference


class RecordProcessor:
    """Records the tokens entering a reference UNet self-attention (rows ordered branch-major, then image)."""

    def __init__(self, name: str, bank_holder: list[ReferenceBank | None], images: list[int]):
        self.name, self.bank_holder, self.images = name, bank_holder, images

    def __call__(self, attn: Attention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        bank = self.bank_holder[0]
        if bank is not None and bank.recording:
            tokens = hidden_states if bank.dtype is None else hidden_states.to(bank.dtype)
            bank.tokens[self.name] = tokens.unflatten(0, (-1, self.images[0]))
        return _sdpa(attn, hidden_states, encoder_hidden_states, attention_mask)


class ReadProcessor:
    """Self-attention over [own tokens, the source image's reference tokens]; branches with
    ``reads_reference`` False attend over their own tokens only (Hallo's unconditional branch)."""

    def __init__(self, name: str, state: ReadState):
        self.name, self.state = name, state

    def __call__(self, attn: Attention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        state = self.state
        if state.bank is None:
            return _sdpa(attn, hidden_states, None, attention_mask)
        # frame row r reads branch r mod B's source tokens: Hallo tiles the branches over the frames
        source = state.bank.source(self.name).to(hidden_states.dtype).repeat(state.frames, 1, 1)
        with_reference = _sdpa(attn, hidden_states, torch.cat([hidden_states, source], dim=1), attention_mask)
        if state.reads_reference is None or bool(state.reads_reference.all()):
            return with_reference
        rows = state.reads_reference.repeat_interleave(state.frames).to(hidden_states.device)
        own = _sdpa(attn, hidden_states, None, attention_mask)
        return torch.where(rows[:, None, None], with_reference, own)
