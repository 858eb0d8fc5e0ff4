"""dlib's 68-point shape predictor (iBUG 300-W layout; weights from face-recognition-models)."""

from __future__ import annotations

import numpy as np

from emo_lightning.components.base import FaceLandmarks
from emo_lightning.components.face_detector.dlib_hog import DlibHogFaceDetector
from emo_lightning.components.face_models import dlib, dlib_model, dlib_rectangle, largest_box
from emo_lightning.registry import register

# The iBUG 300-W layout: right/left are the subject's own (points 36-41 lie on the image's left in a frontal photo).
REGIONS = {
    "jaw": np.arange(0, 17),
    "right_eyebrow": np.arange(17, 22),
    "left_eyebrow": np.arange(22, 27),
    "nose": np.arange(27, 36),
    "right_eye": np.arange(36, 42),
    "left_eye": np.arange(42, 48),
    "lips_outer": np.arange(48, 60),
    "lips_inner": np.arange(60, 68),
    "mouth_opening": np.array([[62, 66], [61, 67], [63, 65]]),  # (upper, lower) inner-lip pairs, middle first
}


@register("landmarks", "dlib68", tiny={})
class Dlib68Landmarks(FaceLandmarks):
    """68 points fitted by a regression-tree cascade inside the face box; without a box the face is found by dlib's
    HOG detector (the largest one). The predictor was trained on HOG boxes: boxes of other detectors work, a little
    less precisely."""

    num_points = 68
    regions = REGIONS

    def __init__(self):
        self.predictor = dlib().shape_predictor(dlib_model("shape_predictor_68_face_landmarks.dat"))
        self.detector = DlibHogFaceDetector()

    def detect(self, image: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
        image = np.ascontiguousarray(image)
        box = largest_box(self.detector.detect(image)) if box is None else np.asarray(box, np.float32)
        if box is None or not np.all(np.isfinite(box)):
            return np.full((self.num_points, 2), np.nan, np.float32)
        shape = self.predictor(image, dlib_rectangle(box))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)
