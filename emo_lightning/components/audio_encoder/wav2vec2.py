"""wav2vec 2.0 features (several hidden layers concatenated) at the video frame rate.

Any checkpoint of the wav2vec2 architecture loads by hub id or folder: ``facebook/wav2vec2-base-960h``,
``facebook/wav2vec2-large-xlsr-53``, ``TencentGameMate/chinese-wav2vec2-base``, … (CTC heads are dropped).
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from emo_lightning.components.audio_encoder.speech_model import FEATURE_MODE, SpeechModelEncoder, load_speech_model
from emo_lightning.registry import register

TINY_WAV2VEC2 = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
                 "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


def normalise(waveform: Tensor) -> Tensor:
    """Zero mean, unit variance per clip, as wav2vec2's and HuBERT's feature extractors do."""
    return (waveform - waveform.mean(1, keepdim=True)) / (waveform.std(1, keepdim=True) + 1e-5)


class ConvSpeechEncoder(SpeechModelEncoder):
    """wav2vec2-style models: a strided CNN over the raw waveform, then a transformer (wav2vec2, HuBERT)."""

    model_class: str
    config_class: str

    def __init__(self, pretrained: str | None = None, config: dict[str, Any] | None = None,
                 layers: list[int] | None = None, output_dim: int = 768, window: int = 2, freeze: bool = True):
        super().__init__()
        import transformers

        model_class, config_class = getattr(transformers, self.model_class), getattr(transformers, self.config_class)
        self.model = load_speech_model(model_class, config_class, pretrained, config, type(self).__name__,
                                       **FEATURE_MODE)
        self.feature_rate = self.sample_rate / math.prod(self.model.config.conv_stride)
        self._setup_head(layers, self.model.config.num_hidden_layers + 1, self.model.config.hidden_size, output_dim,
                         window, freeze, pretrained)

    def hidden_states(self, waveform: Tensor) -> tuple[Tensor, ...]:
        wave = normalise(waveform.to(next(self.model.parameters()).dtype))
        return self.model(wave, output_hidden_states=True).hidden_states


@register("audio_encoder", "wav2vec2", tiny={"config": TINY_WAV2VEC2, "layers": [1, 2], "freeze": False})
class Wav2Vec2AudioEncoder(ConvSpeechEncoder):
    """Frozen wav2vec 2.0 → hidden states of ``layers`` concatenated → trainable MLP → ±window frames."""

    model_class, config_class = "Wav2Vec2Model", "Wav2Vec2Config"
