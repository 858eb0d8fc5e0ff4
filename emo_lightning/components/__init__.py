"""Built-in components. Importing this package registers them (see :mod:`emo_lightning.registry`)."""

from emo_lightning.components import (  # noqa: F401
    audio_encoder,
    backbone,
    face_detector,
    face_embedder,
    face_locator,
    frame_features,
    landmarks,
    pose_estimator,
    scheduler,
    speed_encoder,
    sync_model,
    temporal_block,
    vae,
    video_features,
)
