"""Audio–visual sync models: SyncNet-style embeddings of the audio and the mouth region (Sync-C, Sync-D)."""

from emo_lightning.components.sync_model import syncnet  # noqa: F401  (register built-ins)
