"""dlib's HOG + linear SVM frontal-face detector (built into dlib; works offline)."""

from __future__ import annotations

import numpy as np

from emo_lightning.components.base import FaceDetector
from emo_lightning.components.face_detector.scaling import downscaled, sorted_rows
from emo_lightning.components.face_models import dlib
from emo_lightning.registry import register


@register("face_detector", "dlib_hog", tiny={})
class DlibHogFaceDetector(FaceDetector):
    """HOG sliding window on a copy whose shorter side is at most ``short_side`` pixels, ``upsample`` times doubled
    (it finds faces from ~80 px, ~40 px after one doubling). The score is the SVM margin; ``min_score`` cuts it."""

    def __init__(self, short_side: int | None = 512, upsample: int = 1, min_score: float = 0.0):
        self.detector = dlib().get_frontal_face_detector()
        self.short_side, self.upsample, self.min_score = short_side, upsample, min_score

    def detect(self, image: np.ndarray) -> np.ndarray:
        small, scale = downscaled(np.ascontiguousarray(image), self.short_side)
        rects, scores, _ = self.detector.run(small, self.upsample, self.min_score)
        boxes = [[r.left(), r.top(), r.right(), r.bottom()] for r in rects]
        return sorted_rows(np.array(boxes), np.array(scores), scale, self.min_score, image.shape)
