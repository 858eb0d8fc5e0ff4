"""Per-forward state shared by the attention processors and temporal hooks of both UNets.

diffusers' UNet forward only carries ``encoder_hidden_states`` to the layers; EMO's extra conditions
(reference tokens, motion-frame features, speed tokens, the frame count) travel through this object,
which the EMO module fills right before calling a UNet and clears right after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class UNetState:
    num_frames: int = 1
    reference: dict[str, Tensor] | None = None  # attn1 name -> (B, L, C) reference tokens
    motion: dict[str, Tensor] | None = None  # temporal location -> (B, C, N, h, w)
    speed: Tensor | None = None  # (B, F, speed_dim)
    audio: bool = False  # audio-attention on (attn2 sees the audio tokens)
    temporal: bool = False  # temporal blocks on
    capture: str | None = None  # ReferenceNet pass: "reference" (attn1 inputs) or "motion" (block outputs)
    captured: dict[str, Tensor] = field(default_factory=dict)

    @contextmanager
    def use(self, **values: object) -> Iterator[UNetState]:
        """Set ``values`` for the duration of one UNet call, then restore the defaults."""
        for key, value in values.items():
            setattr(self, key, value)
        try:
            yield self
        finally:
            defaults = UNetState()
            for key in values:
                setattr(self, key, getattr(defaults, key))
