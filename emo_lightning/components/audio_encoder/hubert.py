"""HuBERT features (several hidden layers concatenated) at the video frame rate."""

from __future__ import annotations

from emo_lightning.components.audio_encoder.wav2vec2 import TINY_WAV2VEC2, ConvSpeechEncoder
from emo_lightning.registry import register


@register("audio_encoder", "hubert", tiny={"config": TINY_WAV2VEC2, "layers": [0, 2], "freeze": False})
class HubertAudioEncoder(ConvSpeechEncoder):
    """Frozen HuBERT (``facebook/hubert-base-ls960``, ``-large-ll60k``, …) → hidden states of ``layers``
    concatenated → trainable MLP → ±window frames."""

    model_class, config_class = "HubertModel", "HubertConfig"
