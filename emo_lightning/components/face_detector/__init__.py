"""Face detectors: RGB image → face boxes with scores (used by `emo preprocess` and portrait crops)."""

from emo_lightning.components.face_detector import insightface, opencv_haar  # noqa: F401  (register built-ins)
