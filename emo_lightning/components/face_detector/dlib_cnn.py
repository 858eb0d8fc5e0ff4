"""dlib's MMOD CNN face detector (weights from face-recognition-models; works offline, slow on a CPU)."""

from __future__ import annotations

import numpy as np

from emo_lightning.components.base import FaceDetector
from emo_lightning.components.face_detector.scaling import downscaled, sorted_rows
from emo_lightning.components.face_models import dlib, dlib_model
from emo_lightning.registry import register


@register("face_detector", "dlib_cnn", tiny={})
class DlibCnnFaceDetector(FaceDetector):
    """Max-margin object detection CNN on a copy whose shorter side is at most ``short_side`` pixels, ``upsample``
    times doubled (it finds faces from ~80 px, ~40 px after one doubling); more robust to pose than HOG, about
    100x slower on a CPU. The score is the detector's confidence; ``min_score`` cuts it."""

    def __init__(self, short_side: int | None = 384, upsample: int = 0, min_score: float = 0.0):
        self.detector = dlib().cnn_face_detection_model_v1(dlib_model("mmod_human_face_detector.dat"))
        self.short_side, self.upsample, self.min_score = short_side, upsample, min_score

    def detect(self, image: np.ndarray) -> np.ndarray:
        small, scale = downscaled(np.ascontiguousarray(image), self.short_side)
        found = self.detector(small, self.upsample)
        boxes = [[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()] for d in found]
        return sorted_rows(np.array(boxes), np.array([d.confidence for d in found]), scale, self.min_score,
                           image.shape)
