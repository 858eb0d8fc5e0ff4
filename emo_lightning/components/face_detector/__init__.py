"""Face detectors: RGB image → face boxes with scores (used by `emo preprocess` and portrait crops)."""

from emo_lightning.components.face_detector import (  # noqa: F401  (register built-ins)
    dlib_cnn,
    dlib_hog,
    insightface,
    mediapipe,
    opencv_haar,
)
