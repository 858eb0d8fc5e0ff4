"""wav2vec 2.0 features (several hidden layers concatenated) at the video frame rate."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from emo_lightning.components.base import AudioEncoder
from emo_lightning.components.windows import resample_frames, sliding_window
from emo_lightning.registry import register


def load_wav2vec2(pretrained: str | None, config: dict[str, Any] | None) -> nn.Module:
    """A ``Wav2Vec2Model`` from a hub id / local folder, or randomly initialised from ``config``.

    LayerDrop and SpecAugment are off: they are pre-training regularisers, and LayerDrop would change the
    number of hidden states from step to step.
    """
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    feature_mode = {"layerdrop": 0.0, "apply_spec_augment": False}
    if pretrained:
        return Wav2Vec2Model.from_pretrained(pretrained, **feature_mode)
    if config is None:
        raise ValueError("wav2vec2 needs `pretrained` (hub id or local path) or a `config` dict")
    return Wav2Vec2Model(Wav2Vec2Config(**{**config, **feature_mode}))


TINY_WAV2VEC2 = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
                 "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


@register("audio_encoder", "wav2vec2", tiny={"config": TINY_WAV2VEC2, "layers": [1, 2], "freeze": False})
class Wav2Vec2AudioEncoder(AudioEncoder):
    """Frozen wav2vec 2.0 → hidden states of ``layers`` concatenated → trainable MLP → ±window frames.

    ``layers`` indexes ``hidden_states`` (0 is the CNN feature projection); ``None`` takes every layer. The
    concatenated states at the video frame rate are the ``features`` (cacheable when ``freeze``); the MLP and the
    window are the ``tokens``.
    """

    feature_arguments = ("pretrained", "config", "layers")

    def __init__(self, pretrained: str | None = None, config: dict[str, Any] | None = None,
                 layers: list[int] | None = None, output_dim: int = 768, window: int = 2,
                 freeze: bool = True):
        super().__init__()
        self.output_dim, self.window = output_dim, window
        self.model = load_wav2vec2(pretrained, config)
        num_states = self.model.config.num_hidden_layers + 1
        self.layers = list(range(num_states)) if layers is None else list(layers)
        if not all(-num_states <= i < num_states for i in self.layers):
            raise ValueError(f"wav2vec2 layers {self.layers} out of range for a model with {num_states} states")
        in_dim = self.model.config.hidden_size * len(self.layers)
        self.proj = nn.Sequential(nn.Linear(in_dim, output_dim), nn.SiLU(), nn.Linear(output_dim, output_dim),
                                  nn.LayerNorm(output_dim))
        if getattr(self.model, "masked_spec_embed", None) is not None:
            self.model.masked_spec_embed.requires_grad_(False)  # SpecAugment is off: never used
        self.frozen = freeze
        self.feature_dim = in_dim if freeze else None  # a trained wav2vec2's features change: nothing to cache
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()
            if pretrained:
                self.pretrained_submodules = ("model",)

    def train(self, mode: bool = True) -> Wav2Vec2AudioEncoder:
        super().train(mode)
        if self.frozen:
            self.model.eval()  # frozen: keep dropout off during training
        return self

    def features(self, waveform: Tensor, num_frames: int) -> Tensor:
        wave = waveform.to(next(self.model.parameters()).dtype)
        wave = (wave - wave.mean(1, keepdim=True)) / (wave.std(1, keepdim=True) + 1e-5)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            states = self.model(wave, output_hidden_states=True).hidden_states
        return resample_frames(torch.cat([states[i] for i in self.layers], dim=-1), num_frames)

    def tokens(self, features: Tensor) -> Tensor:
        return sliding_window(self.proj(features.to(self.proj[0].weight.dtype)), self.window)
