"""The Whisper encoder's features (several hidden layers concatenated) at the video frame rate.

Whisper sees audio in fixed windows (30 s for the released models): each window's log-mel spectrogram is padded
to the full window, encoded, and its output cropped to the audio actually there. Longer audio is cut into
consecutive windows from sample 0 (``window_seconds``), the same cut that windowed encoding of long audio uses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from emo_lightning.components.audio_encoder.speech_model import SpeechModelEncoder
from emo_lightning.registry import register

# 3-s windows (max_source_positions 150) keep the tiny encoder cheap on short training clips
TINY_WHISPER = {"d_model": 16, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 32,
                "decoder_layers": 1, "decoder_attention_heads": 2, "decoder_ffn_dim": 32, "num_mel_bins": 16,
                "max_source_positions": 150, "max_target_positions": 16}


def _load_encoder(pretrained: str | None, config: dict[str, Any] | None) -> torch.nn.Module:
    """Whisper's encoder from a hub id / folder of a full Whisper model (its decoder is dropped), or random."""
    from transformers import WhisperConfig, WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from emo_lightning.components.audio_encoder.speech_model import load_speech_model

    if pretrained:
        return load_speech_model(WhisperModel, WhisperConfig, pretrained, None, "whisper").get_encoder()
    return load_speech_model(WhisperEncoder, WhisperConfig, None, config, "whisper")


def _feature_extractor(pretrained: str | None, num_mel_bins: int, chunk_seconds: int) -> Any:
    """The model's own feature extractor, or Whisper's defaults for a folder holding only the model (written by
    save_pretrained) and for random configs."""
    from transformers import WhisperFeatureExtractor

    if pretrained and not (Path(pretrained).is_dir() and not (Path(pretrained) / "preprocessor_config.json").exists()):
        return WhisperFeatureExtractor.from_pretrained(pretrained)
    return WhisperFeatureExtractor(feature_size=num_mel_bins, chunk_length=chunk_seconds)


@register("audio_encoder", "whisper", tiny={"config": TINY_WHISPER, "layers": [1, 2], "freeze": False})
class WhisperAudioEncoder(SpeechModelEncoder):
    """Frozen Whisper encoder (``openai/whisper-tiny`` … ``-large-v3``) → hidden states of ``layers``
    concatenated → trainable MLP → ±window frames."""

    def __init__(self, pretrained: str | None = None, config: dict[str, Any] | None = None,
                 layers: list[int] | None = None, output_dim: int = 768, window: int = 2, freeze: bool = True):
        super().__init__()
        self.model = _load_encoder(pretrained, config)
        cfg = self.model.config
        hop = 160  # Whisper's mel hop at 16 kHz; its encoder halves the rate once more (conv2 stride 2)
        chunk_seconds, rest = divmod(cfg.max_source_positions * 2 * hop, 16000)
        if rest:
            raise ValueError(f"whisper: max_source_positions must be a multiple of 50 (whole seconds), got "
                             f"{cfg.max_source_positions}")
        self.extractor = _feature_extractor(pretrained, cfg.num_mel_bins, chunk_seconds)
        if self.extractor.feature_size != cfg.num_mel_bins or self.extractor.n_samples != round(chunk_seconds * 16000):
            raise ValueError(f"whisper: the feature extractor of {pretrained} makes {self.extractor.feature_size} mel "
                             f"bins over {self.extractor.chunk_length} s, the encoder takes {cfg.num_mel_bins} over "
                             f"{chunk_seconds} s")
        self.sample_rate = self.extractor.sampling_rate
        self.feature_rate = self.sample_rate / (2 * self.extractor.hop_length)
        self.window_seconds = self.extractor.n_samples / self.sample_rate
        self._setup_head(layers, cfg.encoder_layers + 1, cfg.d_model, output_dim, window, freeze, pretrained)

    def _log_mel(self, waveform: Tensor) -> Tensor:
        """``(B, ≤ n_samples) -> (B, num_mel_bins, 2·max_source_positions)``, padded with silence to the window."""
        audio = [w.detach().float().cpu().numpy() for w in waveform]
        mel = self.extractor(audio, sampling_rate=self.sample_rate, return_tensors="pt", padding="max_length")
        return mel.input_features.to(waveform.device, next(self.model.parameters()).dtype)

    def hidden_states(self, waveform: Tensor) -> tuple[Tensor, ...]:
        window = self.extractor.n_samples
        per_window = []
        for start in range(0, waveform.shape[-1], window):
            chunk = waveform[:, start:start + window]
            states = self.model(self._log_mel(chunk), output_hidden_states=True).hidden_states
            keep = math.ceil(chunk.shape[-1] * self.feature_rate / self.sample_rate)  # the audio actually there
            per_window.append([s[:, :keep] for s in states])
        return tuple(torch.cat(layer, dim=1) for layer in zip(*per_window, strict=True))
