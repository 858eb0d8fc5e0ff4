"""Hallo's audio path: wav2vec2 read at the video frame rate, then a per-frame MLP to a set of context tokens.

It differs from :mod:`~emo_lightning.components.audio_encoder.wav2vec2` in three places, each of which changes the
numbers a released Hallo checkpoint was trained on:

* the waveform is normalised the way transformers' ``Wav2Vec2FeatureExtractor`` does it (population variance,
  ε = 1e-7), then zero-padded by whole frames of ``sample_rate // fps`` samples to the frames asked for;
* the convolutional features are linearly interpolated to one per video frame (corners aligned) *before* the
  transformer, so the transformer itself runs at the video frame rate;
* every frame's window (±``window`` frames, edges repeated) of every transformer layer's output goes through one
  MLP (``proj1`` → ReLU → ``proj2`` → ReLU → ``proj3``) that emits ``context_tokens`` tokens, layer-normalised.
  The MLP sees the window's order, so the tokens carry no window slots (``slot_positions`` is False).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emo_lightning.components.audio_encoder.speech_model import FEATURE_MODE, load_speech_model
from emo_lightning.components.audio_encoder.wav2vec2 import TINY_WAV2VEC2
from emo_lightning.components.base import AudioEncoder
from emo_lightning.components.windows import sliding_window
from emo_lightning.registry import register


def feature_extractor_normalise(waveform: Tensor) -> Tensor:
    """Zero mean and unit variance per clip, as ``Wav2Vec2FeatureExtractor(do_normalize=True)`` computes it."""
    centred = waveform - waveform.mean(-1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + 1e-7)


class FrameRateAudioProjection(nn.Module):
    """Hallo's audio projection: ``(B, F, window_slots · layers · width)`` → ``(B, F, context_tokens, output_dim)``.

    The parameter names (``proj1``, ``proj2``, ``proj3``, ``norm``) are those of Hallo's ``audioproj`` weights.
    """

    def __init__(self, input_dim: int, intermediate_dim: int, output_dim: int, context_tokens: int):
        super().__init__()
        self.context_tokens, self.output_dim = context_tokens, output_dim
        self.proj1 = nn.Linear(input_dim, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, windows: Tensor) -> Tensor:
        hidden = torch.relu(self.proj2(torch.relu(self.proj1(windows))))
        tokens = self.proj3(hidden).unflatten(-1, (self.context_tokens, self.output_dim))
        return self.norm(tokens)


@register("audio_encoder", "hallo_wav2vec2",
          tiny={"config": TINY_WAV2VEC2, "intermediate_dim": 16, "context_tokens": 4})
class HalloAudioEncoder(AudioEncoder):
    """wav2vec2 at the video frame rate (frozen) → Hallo's windowed MLP → ``context_tokens`` tokens per frame.

    Args:
        pretrained: a wav2vec2 hub id or folder (Hallo's release: ``wav2vec/wav2vec2-base-960h``); or
        config: a ``Wav2Vec2Config`` dict for a randomly initialised model (tests).
        output_dim: the token width (the backbone's audio width; derived from it in EMO).
        window: frames on each side that one frame's tokens see (Hallo: 2).
        intermediate_dim, context_tokens: the projection's hidden width and its tokens per frame (Hallo: 512, 32).
        fps: the video frame rate the frames are at: a frame is ``sample_rate / fps`` samples of audio.
    """

    feature_arguments = ("pretrained", "config", "fps")
    slot_positions = False

    def __init__(self, pretrained: str | None = None, config: dict[str, Any] | None = None, output_dim: int = 768,
                 window: int = 2, intermediate_dim: int = 512, context_tokens: int = 32, fps: float = 25.0):
        super().__init__()
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        self.model = load_speech_model(Wav2Vec2Model, Wav2Vec2Config, pretrained, config, type(self).__name__,
                                       **FEATURE_MODE)
        self.model.requires_grad_(False).eval()
        if pretrained:
            self.pretrained_submodules = ("model",)
        self.output_dim, self.window, self.fps = output_dim, window, fps
        self.context_tokens = context_tokens
        layers, width = self.model.config.num_hidden_layers, self.model.config.hidden_size
        self.feature_dim = layers * width
        self.feature_rate = fps  # the transformer runs at the video frame rate
        self.proj = FrameRateAudioProjection((2 * window + 1) * self.feature_dim, intermediate_dim, output_dim,
                                             context_tokens)

    @property
    def tokens_per_frame(self) -> int:
        return self.context_tokens

    def train(self, mode: bool = True) -> HalloAudioEncoder:
        super().train(mode)
        self.model.eval()  # frozen: no dropout, no SpecAugment
        return self

    def features(self, waveform: Tensor, num_frames: int) -> Tensor:
        """``(B, S) -> (B, num_frames, layers · width)``: every transformer layer's output at each video frame."""
        wave = feature_extractor_normalise(waveform.to(next(self.model.parameters()).dtype))
        wave = F.pad(wave, (0, self._padding(wave.shape[-1], num_frames)))

        def one_per_frame(module: nn.Module, args: Any, conv_features: Tensor) -> Tensor:
            return F.interpolate(conv_features, size=num_frames, mode="linear", align_corners=True)

        hook = self.model.feature_extractor.register_forward_hook(one_per_frame)
        try:
            with torch.no_grad():
                states = self.model(wave, output_hidden_states=True).hidden_states[1:]
        finally:
            hook.remove()
        return torch.cat(states, dim=-1)

    def _padding(self, samples: int, num_frames: int) -> int:
        """Zeros to append (negative: samples to cut) so that ``samples`` cover ``num_frames`` frames as Hallo's
        audio processor pads: the frames the audio starts (rounded up) plus whole frames of ``sample_rate // fps``
        samples."""
        started = math.ceil(samples / self.sample_rate * self.fps)
        if started <= num_frames:
            return (num_frames - started) * int(self.sample_rate // self.fps)
        return round(num_frames * self.sample_rate / self.fps) - samples

    def tokens(self, features: Tensor) -> Tensor:
        windows = sliding_window(features.to(self.proj.proj1.weight.dtype), self.window)  # (B, F, 2m+1, D)
        return self.proj(windows.flatten(2))
