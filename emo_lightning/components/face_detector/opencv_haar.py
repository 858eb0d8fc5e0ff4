"""OpenCV's bundled Haar cascades: a face detector that works offline with what `opencv-python-headless<5` ships
(OpenCV 5 dropped the cascades)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from emo_lightning.components.base import FaceDetector
from emo_lightning.components.face_detector.scaling import downscaled, sorted_rows
from emo_lightning.registry import register


@register("face_detector", "opencv_haar", tiny={"short_side": 192})
class HaarFaceDetector(FaceDetector):
    """Viola-Jones frontal-face cascade on a grey, histogram-equalised copy whose shorter side is at most
    ``short_side`` pixels (the shorter side, so that tall phone frames keep as many pixels per face as square ones).

    The score of a box is the cascade's last-stage weight (``detectMultiScale3``); boxes below ``min_score`` are
    dropped (weak hits on clothes and background score ~1-2, faces ~5-12 with the default cascade). Profiles and
    strong head turns or tilts are missed: that is what the preprocessing's no-face rule is for.
    """

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", short_side: int | None = 384,
                 scale_factor: float = 1.1, min_neighbors: int = 5, min_size: float = 0.08, min_score: float = 3.0):
        path = Path(cascade) if Path(cascade).is_file() else Path(cv2.data.haarcascades) / cascade
        self.classifier = cv2.CascadeClassifier(str(path))
        if self.classifier.empty():
            raise FileNotFoundError(f"cannot load the Haar cascade {cascade!r} (looked at {path}); the cascades ship "
                                    "with opencv-python-headless<5, under cv2.data.haarcascades")
        self.short_side, self.scale_factor, self.min_neighbors = short_side, scale_factor, min_neighbors
        self.min_size, self.min_score = min_size, min_score

    def detect(self, image: np.ndarray) -> np.ndarray:
        gray, scale = downscaled(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), self.short_side)
        gray = cv2.equalizeHist(gray)
        smallest = max(12, round(self.min_size * min(gray.shape)))
        boxes, _, weights = self.classifier.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(smallest, smallest),
            outputRejectLevels=True)
        xywh = np.asarray(boxes, np.float32).reshape(-1, 4)
        return sorted_rows(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), np.asarray(weights), scale,
                           self.min_score)
