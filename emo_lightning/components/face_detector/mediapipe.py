"""MediaPipe's BlazeFace detector (weights inside the mediapipe wheel; works offline)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from emo_lightning.components.base import FaceDetector
from emo_lightning.components.face_detector.scaling import sorted_rows
from emo_lightning.components.face_models import mediapipe_solutions
from emo_lightning.registry import register

MODELS = {"short": 0, "full": 1}


def square_windows(width: int, height: int, max_ratio: float) -> list[tuple[int, int, int]]:
    """``(left, top, side)`` of square windows along the long side of an image more than ``max_ratio`` : 1, each
    overlapping the next by half, covering the whole image; none for a squarer image."""
    side, length = min(width, height), max(width, height)
    if length <= max_ratio * side:
        return []
    count = math.ceil((length - side) / (side / 2)) + 1
    starts = np.linspace(0, length - side, count).round().astype(int)
    return [(int(s), 0, side) if width > height else (0, int(s), side) for s in starts]


@register("face_detector", "mediapipe", tiny={})
class MediaPipeFaceDetector(FaceDetector):
    """BlazeFace: ``model="full"`` (full-range, for faces up to ~5 m away, small in the frame) or ``"short"``
    (short-range, faces within ~2 m, faster); the score is its confidence in [0, 1].

    MediaPipe letterboxes an image into the model's square input, so in a tall or wide frame a face gets few input
    pixels: such frames (more than ``max_ratio`` : 1) are also searched in square windows along their long side,
    and overlapping boxes merged (non-maximum suppression at IoU ``merge_iou``).
    """

    def __init__(self, model: str = "full", min_score: float = 0.5, max_ratio: float | None = 1.3,
                 merge_iou: float = 0.3):
        if model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
        self.detector = mediapipe_solutions().face_detection.FaceDetection(
            model_selection=MODELS[model], min_detection_confidence=min_score)
        self.max_ratio, self.merge_iou = max_ratio, merge_iou

    def detect(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        windows = [] if self.max_ratio is None else square_windows(width, height, self.max_ratio)
        found = [self._detect(image, 0, 0)]
        found += [self._detect(image[top:top + side, left:left + side], left, top) for left, top, side in windows]
        boxes = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        if windows and len(boxes) > 1:
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
            keep = np.ravel(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, self.merge_iou))
            boxes, scores = boxes[keep], scores[keep]
        return sorted_rows(boxes, scores, shape=image.shape)

    def _detect(self, image: np.ndarray, left: int, top: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (K, 4) in pixels of the full image (``image`` is a window at ``left``, ``top`` of it) and scores."""
        height, width = image.shape[:2]
        detections = self.detector.process(np.ascontiguousarray(image)).detections or []
        relative = [d.location_data.relative_bounding_box for d in detections]
        xywh = np.array([[r.xmin, r.ymin, r.width, r.height] for r in relative], np.float32).reshape(-1, 4)
        xywh *= np.array([width, height, width, height], np.float32)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1) + np.array([left, top, left, top])
        return boxes.astype(np.float32), np.array([d.score[0] for d in detections], np.float32)
