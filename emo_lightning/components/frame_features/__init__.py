"""Frame feature networks: images → one vector each (FID, KID)."""

from emo_lightning.components.frame_features import random_conv, torchscript  # noqa: F401  (register built-ins)
