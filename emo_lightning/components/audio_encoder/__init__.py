"""Audio encoders: waveform → windowed per-frame tokens."""

from emo_lightning.components.audio_encoder import mel, wav2vec2  # noqa: F401  (register built-ins)
