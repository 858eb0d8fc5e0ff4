"""Audio encoders: waveform → windowed per-frame tokens."""

# importing them registers the built-ins
from emo_lightning.components.audio_encoder import hallo, hubert, mel, wav2vec2, whisper  # noqa: F401
