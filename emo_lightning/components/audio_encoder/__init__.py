"""Audio encoders: waveform → windowed per-frame tokens."""

from emo_lightning.components.audio_encoder import hubert, mel, wav2vec2, whisper  # noqa: F401  (register built-ins)
