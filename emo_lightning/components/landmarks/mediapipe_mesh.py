"""MediaPipe's face mesh: 478 points (468 mesh points + 10 iris points), weights inside the mediapipe wheel."""

from __future__ import annotations

import numpy as np

from emo_lightning.components.base import FaceLandmarks
from emo_lightning.components.face_detector.mediapipe import MediaPipeFaceDetector
from emo_lightning.components.face_models import largest_box, mediapipe_solutions
from emo_lightning.components.landmarks.mesh_topology import IRIS_POINTS, face_mesh_regions
from emo_lightning.registry import register


def square_around(box: np.ndarray, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel bounds (x0, y0, x1, y1) of the square around ``box`` grown by ``margin`` of its longer side on every
    side, clipped to the image."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    half = max(x1 - x0, y1 - y0) * (0.5 + margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (max(0, int(cx - half)), max(0, int(cy - half)), min(width, int(np.ceil(cx + half))),
            min(height, int(np.ceil(cy + half))))


@register("landmarks", "mediapipe_mesh", tiny={})
class MediaPipeFaceMesh(FaceLandmarks):
    """The refined face mesh (lips, eyes and irises in detail) of the face in ``box``.

    The mesh runs on the square around the box grown by ``margin``, where MediaPipe's own detector finds the face
    at a size it was trained for whatever the frame's size; without a box the face is found first by BlazeFace
    full-range (the largest one). ``regions``: see :func:`~.mesh_topology.face_mesh_regions`.
    """

    num_points = 468 + IRIS_POINTS

    def __init__(self, margin: float = 0.5, min_score: float = 0.5):
        self.mesh = mediapipe_solutions().face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=min_score)
        self.detector = MediaPipeFaceDetector("full", min_score)
        self.margin = margin
        self.regions = face_mesh_regions()

    def detect(self, image: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
        missing = np.full((self.num_points, 2), np.nan, np.float32)
        box = largest_box(self.detector.detect(image)) if box is None else np.asarray(box, np.float32)
        if box is None or not np.all(np.isfinite(box)):
            return missing
        x0, y0, x1, y1 = square_around(box, self.margin, image.shape[1], image.shape[0])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return missing
        found = self.mesh.process(np.ascontiguousarray(image[y0:y1, x0:x1])).multi_face_landmarks
        if not found:
            return missing
        points = np.array([(p.x, p.y) for p in found[0].landmark], np.float32)
        return (points * np.array([x1 - x0, y1 - y0], np.float32) + np.array([x0, y0], np.float32)).astype(np.float32)
