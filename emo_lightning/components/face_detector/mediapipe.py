"""MediaPipe's BlazeFace detector (weights inside the mediapipe wheel; works offline)."""

from __future__ import annotations

import numpy as np

from emo_lightning.components.base import FaceDetector
from emo_lightning.components.face_detector.scaling import sorted_rows
from emo_lightning.components.face_models import mediapipe_solutions
from emo_lightning.registry import register

MODELS = {"short": 0, "full": 1}


@register("face_detector", "mediapipe", tiny={})
class MediaPipeFaceDetector(FaceDetector):
    """BlazeFace: ``model="full"`` (full-range, for faces up to ~5 m away, small in the frame) or ``"short"``
    (short-range, faces within ~2 m, faster). MediaPipe letterboxes any aspect ratio into the model's square
    input; the score is BlazeFace's confidence in [0, 1]."""

    def __init__(self, model: str = "full", min_score: float = 0.5):
        if model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
        self.detector = mediapipe_solutions().face_detection.FaceDetection(
            model_selection=MODELS[model], min_detection_confidence=min_score)

    def detect(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        detections = self.detector.process(np.ascontiguousarray(image)).detections or []
        boxes, scores = [], []
        for detection in detections:
            box = detection.location_data.relative_bounding_box
            boxes.append([box.xmin * width, box.ymin * height, (box.xmin + box.width) * width,
                          (box.ymin + box.height) * height])
            scores.append(detection.score[0])
        return sorted_rows(np.array(boxes), np.array(scores), shape=image.shape)
