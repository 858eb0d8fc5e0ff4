"""Shared machinery of the encoders built on a pretrained transformers speech model (wav2vec2, HuBERT, Whisper).

Each is split in two, as :class:`~emo_lightning.components.base.AudioEncoder` describes: ``features`` runs the
(frozen by default) speech model, concatenates the hidden states of the chosen ``layers`` and takes them from the
model's own ``feature_rate`` to the video frames (by time); the trainable ``tokens`` part projects them to
``output_dim`` and windows them ±``window`` frames. Frozen features can be cached by `emo preprocess cache_audio=…`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from emo_lightning.components.base import AudioEncoder
from emo_lightning.components.windows import features_at_frames, sliding_window

# pre-training regularisers: LayerDrop would change the number of hidden states from step to step
FEATURE_MODE = {"layerdrop": 0.0, "apply_spec_augment": False}


def load_speech_model(model_class: type, config_class: type, pretrained: str | None, config: dict[str, Any] | None,
                      what: str, **overrides: Any) -> nn.Module:
    """``model_class`` from a hub id / local folder (whose config must be ``config_class``'s model type), or randomly
    initialised from the ``config`` dict."""
    if pretrained:
        from transformers import AutoConfig

        found = AutoConfig.from_pretrained(pretrained).model_type
        if found != config_class.model_type:
            raise ValueError(f"{what}: {pretrained} holds a {found!r} model, not {config_class.model_type!r}: "
                             "choose the audio encoder made for it (emo plugins lists them)")
        return model_class.from_pretrained(pretrained, **overrides)
    if config is None:
        raise ValueError(f"{what} needs `pretrained` (hub id or local folder) or a `config` dict")
    return model_class(config_class(**{**config, **overrides}))


class SpeechModelEncoder(AudioEncoder):
    """A transformers speech model's hidden states of ``layers`` (indices into ``hidden_states``, 0 the input
    embedding, negative from the top; None takes all) → trainable MLP head → ±``window`` frames.

    Subclasses set ``self.model`` (the speech model) before calling :meth:`_setup_head`, and implement
    :meth:`hidden_states`.
    """

    feature_arguments = ("pretrained", "config", "layers")

    def _setup_head(self, layers: list[int] | None, num_states: int, hidden_size: int, output_dim: int, window: int,
                    freeze: bool, pretrained: str | None) -> None:
        self.output_dim, self.window = output_dim, window
        self.layers = list(range(num_states)) if layers is None else list(layers)
        if not self.layers or not all(-num_states <= i < num_states for i in self.layers):
            raise ValueError(f"{type(self).__name__}: layers {self.layers} out of range for a model with "
                             f"{num_states} hidden states (0 … {num_states - 1}, or negative from the top)")
        in_dim = hidden_size * len(self.layers)
        self.proj = nn.Sequential(nn.Linear(in_dim, output_dim), nn.SiLU(), nn.Linear(output_dim, output_dim),
                                  nn.LayerNorm(output_dim))
        if getattr(self.model, "masked_spec_embed", None) is not None:
            self.model.masked_spec_embed.requires_grad_(False)  # SpecAugment is off: never used
        self.frozen = freeze
        self.feature_dim = in_dim if freeze else None  # a trained speech model's features change: nothing to cache
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()
            if pretrained:
                self.pretrained_submodules = ("model",)

    def train(self, mode: bool = True) -> SpeechModelEncoder:
        super().train(mode)
        if self.frozen:
            self.model.eval()  # frozen: keep dropout off during training
        return self

    def hidden_states(self, waveform: Tensor) -> tuple[Tensor, ...]:
        """Every hidden state of the speech model, each ``(B, T, hidden)`` at ``feature_rate``."""
        raise NotImplementedError

    def features(self, waveform: Tensor, num_frames: int) -> Tensor:
        """``(B, S) -> (B, num_frames, hidden·len(layers))``: the frozen part of the encoder."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            states = self.hidden_states(waveform)
        return features_at_frames(torch.cat([states[i] for i in self.layers], dim=-1), num_frames,
                                  waveform.shape[-1], self.sample_rate, self.feature_rate)

    def tokens(self, features: Tensor) -> Tensor:
        return sliding_window(self.proj(features.to(self.proj[0].weight.dtype)), self.window)
