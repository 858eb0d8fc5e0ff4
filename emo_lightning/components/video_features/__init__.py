"""Video feature networks: clips → one vector each (FVD)."""

from emo_lightning.components.video_features import random_conv, torchscript  # noqa: F401  (register built-ins)
