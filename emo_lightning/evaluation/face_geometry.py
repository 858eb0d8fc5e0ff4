"""Geometry of facial landmarks shared by the landmark metrics: eye centres, pose-normalised shapes, mouth opening.

Landmarks are ``(F, P, 2)`` pixel coordinates with a model's named ``regions`` (see
:class:`emo_lightning.components.base.FaceLandmarks`); frames without a face are all-NaN.
"""

from __future__ import annotations

import numpy as np

EXPRESSION_REGIONS = ("lips_outer", "lips_inner", "left_eye", "right_eye")  # every landmark model provides these


def eye_centres(points: np.ndarray, regions: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The subject's left and right eye centres, (..., 2) each."""
    return points[..., regions["left_eye"], :].mean(-2), points[..., regions["right_eye"], :].mean(-2)


def eye_distance(points: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    left, right = eye_centres(points, regions)
    return np.linalg.norm(left - right, axis=-1)


def normalised_shapes(points: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """Shapes with position, in-plane rotation and size removed: each frame is moved so that the eyes' midpoint is
    the origin, rotated so that the eyes lie on the x axis, and scaled so that they are 1 apart. What is left is
    expression (and out-of-plane head turn)."""
    left, right = eye_centres(points, regions)
    centre, axis = (left + right) / 2, right - left
    scale = np.linalg.norm(axis, axis=-1, keepdims=True)
    cos, sin = axis[..., :1] / scale, axis[..., 1:] / scale
    shifted = points - centre[..., None, :]
    x, y = shifted[..., 0], shifted[..., 1]
    rotated = np.stack([x * cos + y * sin, -x * sin + y * cos], -1)
    return rotated / scale[..., None, :]


def polygon_area(contour: np.ndarray) -> np.ndarray:
    """Area of closed polygons (..., K, 2) by the shoelace formula."""
    x, y = contour[..., 0], contour[..., 1]
    return 0.5 * np.abs((x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y).sum(-1))


def mouth_opening(points: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """Mouth opening per frame (F,): the area inside the inner lip contour over the squared eye distance, which
    ignores the head's position, in-plane rotation and distance from the camera; NaN where no face was found."""
    return polygon_area(points[:, regions["lips_inner"]]) / eye_distance(points, regions) ** 2


def expression_features(points: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """(F, 2·K) pose-normalised coordinates of the lips and eyes (E-FID's feature vector); rows with NaN stay."""
    keep = np.concatenate([np.asarray(regions[r]) for r in EXPRESSION_REGIONS])
    return normalised_shapes(points, regions)[:, keep].reshape(len(points), -1)
