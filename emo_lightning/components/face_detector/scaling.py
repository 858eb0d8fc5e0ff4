"""Shared steps of the face detectors: a working copy at a bounded size, and rows sorted by score."""

from __future__ import annotations

import cv2
import numpy as np


def downscaled(image: np.ndarray, short_side: int | None) -> tuple[np.ndarray, float]:
    """``image`` scaled (never up) so that its shorter side is ``short_side`` pixels, and the scale used.

    The shorter side sets the scale because faces are sized against it (``min_face``): a tall 1080x1920 phone
    frame keeps as many pixels per face as a 1080x1080 one. ``None`` keeps the image as it is.
    """
    scale = 1.0 if short_side is None else min(1.0, short_side / min(image.shape[:2]))
    if scale >= 1.0:
        return image, 1.0
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale


def sorted_rows(boxes: np.ndarray, scores: np.ndarray, scale: float = 1.0, min_score: float = -np.inf,
                shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Detector output float32 (K, 5): boxes (K, 4) x0, y0, x1, y1 divided by ``scale`` (back to the source image's
    pixels, clipped to ``shape`` when given), with their scores, those below ``min_score`` dropped, highest first."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4) / scale
    if shape is not None:
        boxes = np.clip(boxes, 0, np.array([shape[1], shape[0], shape[1], shape[0]], np.float32))
    rows = np.concatenate([boxes, np.asarray(scores, np.float32).reshape(-1, 1)], 1)
    rows = rows[rows[:, 4] >= min_score]
    return rows[np.argsort(-rows[:, 4], kind="stable")]
