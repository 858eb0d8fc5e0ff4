"""insightface's ArcFace embedding (the ``recognition`` model of a pack such as ``buffalo_l``, read from disk)."""

from __future__ import annotations

import numpy as np

from emo_lightning.components.base import FaceEmbedder
from emo_lightning.components.face_detector.insightface import face_analysis
from emo_lightning.components.face_models import unit
from emo_lightning.registry import register


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes x0, y0, x1, y1."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


@register("face_embedder", "insightface", tiny={"det_size": 320})
class InsightFaceEmbedder(FaceEmbedder):
    """ArcFace on the face aligned by the pack's detector keypoints (512-d for ``buffalo_l``). The detector runs on
    the whole image (ArcFace needs its five keypoints); the face is the one overlapping ``box`` most (at least
    ``min_overlap`` IoU), or the largest without a box."""

    def __init__(self, model: str = "buffalo_l", root: str = "~/.insightface", det_size: int = 640,
                 min_overlap: float = 0.3):
        self.app = face_analysis(model, root, ["recognition"], det_size)
        self.dim = int(self.app.models["recognition"].output_shape[1])
        self.min_overlap = min_overlap

    def embed(self, image: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
        face = self._pick(self.app.get(np.ascontiguousarray(image[..., ::-1])), box)  # insightface takes BGR
        return np.full(self.dim, np.nan, np.float32) if face is None else unit(face.embedding)

    def _pick(self, faces: list, box: np.ndarray | None):
        """The face overlapping ``box`` most (None below ``min_overlap``), or the largest face without a box."""
        if box is None:
            return max(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]), default=None)
        box = np.asarray(box, np.float32)
        best = max(faces, key=lambda f: overlap(f.bbox, box), default=None)
        return best if best is not None and overlap(best.bbox, box) >= self.min_overlap else None
