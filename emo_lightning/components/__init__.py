"""Built-in components. Importing this package registers them (see :mod:`emo_lightning.registry`)."""

from emo_lightning.components import (  # noqa: F401
    audio_encoder,
    face_detector,
    face_embedder,
    face_locator,
    landmarks,
    pose_estimator,
    scheduler,
    speed_encoder,
    temporal_block,
    unet,
    vae,
)
