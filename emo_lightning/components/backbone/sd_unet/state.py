"""Per-forward state shared by the attention processors and temporal hooks of both UNets.

diffusers' UNet forward only carries ``encoder_hidden_states`` to the layers; EMO's extra conditions
(reference tokens, motion-frame features, speed tokens, the frame count) travel through this object,
which the EMO module fills right before calling a UNet and clears right after.

Gradient checkpointing recomputes a layer during the backward pass, when that forward's values are long
gone: :func:`checkpoint` replays the values the layer saw (see :meth:`UNetState.snapshot`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from typing import Any

import torch
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
    gradient_checkpointing: bool = False  # a model setting, not per forward: temporal blocks run checkpointed

    @contextmanager
    def use(self, **values: object) -> Iterator[UNetState]:
        """Set ``values`` for the duration of one UNet call, then restore what was there before."""
        previous = {key: getattr(self, key) for key in values}
        for key, value in values.items():
            setattr(self, key, value)
        try:
            yield self
        finally:
            for key, value in previous.items():
                setattr(self, key, value)

    def snapshot(self) -> dict[str, Any]:
        """The values the running forward sees, to replay in its recomputation.

        A replay never captures: the forward's captures are already in its caller's hands, and recording the
        recomputed tensors again would overwrite them.
        """
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "captured"}
        return {**values, "capture": None}


class _Replay:
    """Sets a snapshot's values while a recomputation runs (re-enterable: a second backward recomputes again)."""

    def __init__(self, state: UNetState, snapshot: dict[str, Any]):
        self.state, self.snapshot, self.previous = state, snapshot, []

    def __enter__(self) -> None:
        self.previous.append({key: getattr(self.state, key) for key in self.snapshot})
        for key, value in self.snapshot.items():
            setattr(self.state, key, value)

    def __exit__(self, *exc: object) -> None:
        for key, value in self.previous.pop().items():
            setattr(self.state, key, value)


def checkpoint(state: UNetState, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` under non-reentrant activation checkpointing, its recomputation seeing ``state`` as the
    forward did (processors and hooks read their conditions from ``state``, which the backward pass has reset)."""
    replay = _Replay(state, state.snapshot())
    return torch.utils.checkpoint.checkpoint(function, *args, use_reentrant=False,
                                             context_fn=lambda: (nullcontext(), replay))


class Checkpointing:
    """:func:`checkpoint` bound to ``state``, as diffusers' ``enable_gradient_checkpointing`` takes it (a class, not a
    closure: a deep copy of the model, like an EMA copy, then checkpoints with its own state)."""

    def __init__(self, state: UNetState):
        self.state = state

    def __call__(self, function: Callable[..., Any], *args: Any) -> Any:
        return checkpoint(self.state, function, *args)
