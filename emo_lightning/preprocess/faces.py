"""One face box per frame, by a stated rule."""

from __future__ import annotations

import numpy as np

from emo_lightning.components.base import FaceDetector


def main_face(detections: np.ndarray, image_shape: tuple[int, ...], min_face: float) -> np.ndarray | None:
    """The subject's box (x0, y0, x1, y1) among a detector's rows, or None.

    Rule: boxes whose shorter side is below ``min_face`` × the image's shorter side are ignored (tiny faces:
    background people, false hits); of the rest, the largest box is the subject (several faces: the one nearest
    the camera). No box left: no face.
    """
    boxes = detections[:, :4]
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    boxes = boxes[sides >= min_face * min(image_shape[:2])]
    if len(boxes) == 0:
        return None
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[int(np.argmax(areas))].astype(np.float32)


def face_track(frames: np.ndarray, detector: FaceDetector, min_face: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes float32 (F, 4) and found bool (F,) for frames uint8 (F, H, W, 3), by :func:`main_face` per frame.

    A frame without a face takes the box of the nearest frame that has one (found=False marks it); when no frame
    has a face every box is NaN.
    """
    boxes = np.full((len(frames), 4), np.nan, np.float32)
    for i, frame in enumerate(frames):
        box = main_face(detector.detect(frame), frame.shape, min_face)
        if box is not None:
            boxes[i] = box
    found = ~np.isnan(boxes[:, 0])
    if found.any() and not found.all():
        have = np.flatnonzero(found)
        nearest = have[np.abs(np.arange(len(frames))[:, None] - have[None, :]).argmin(1)]
        boxes = boxes[nearest]
    return boxes, found
