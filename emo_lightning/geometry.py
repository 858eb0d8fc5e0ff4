"""Face and box geometry: boxes and masks in pixels, square crops around faces, the mouth's region, head speed.

Shared by the synthetic data, preprocessing, the preprocessed data set, portraits and pose estimators. Pixel boxes are
(x0, y0, x1, y1); masks are float32 with 1 on the region.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

# ------------------------------------------------------------------------------------------ boxes and masks


def boxes_to_mask(boxes: np.ndarray, resolution: int) -> np.ndarray:
    """Union of pixel boxes (F, 4) as a float32 (H, W) mask: 1 on every pixel a box touches."""
    mask = np.zeros((resolution, resolution), np.float32)
    for x0, y0, x1, y1 in boxes:
        mask[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = 1
    return mask


# Where the lips lie in a face detector's box (x0, y0, x1, y1 as fractions of it): the lower middle, generous
# enough for the head turns of talking-head video. The lip mask of a data set made without landmarks (and of a frame
# whose lips were not found) is this region.
MOUTH_IN_FACE_BOX = (0.2, 0.55, 0.8, 1.0)


LIP_MARGIN = 0.15
"""The landmark lip mask is the filled outer-lip contour grown on every side by this share of the mouth's width
(corner to corner), so that the skin the lips move is weighted too."""


def lip_masks(points: np.ndarray, lips_outer: np.ndarray, face_boxes: np.ndarray, resolution: int) -> np.ndarray:
    """(F, H, W) float32 lip masks of ``resolution``² frames: each frame's outer-lip contour (``points`` (F, P, 2)
    in pixels, ``lips_outer`` its indices, in order) filled and grown by ``LIP_MARGIN``; a frame whose lips were not
    found (NaN) falls back to the mouth region of its face box (``mouth_boxes``)."""
    fallback = mouth_boxes(face_boxes)
    masks = np.zeros((len(points), resolution, resolution), np.uint8)
    for mask, frame_points, box in zip(masks, np.asarray(points, np.float32), fallback, strict=True):
        lips = frame_points[lips_outer]
        if not np.isfinite(lips).all():
            mask[:] = boxes_to_mask(box[None], resolution)
            continue
        contour = np.round(lips * 16).astype(np.int32)  # 4 fractional bits (shift=4): sub-pixel vertices
        grow = max(1, round(LIP_MARGIN * float(np.ptp(lips[:, 0]))))
        cv2.fillPoly(mask, [contour], 1, shift=4)
        cv2.polylines(mask, [contour], True, 1, thickness=2 * grow + 1, shift=4)
    return masks.astype(np.float32)


def mouth_boxes(face_boxes: np.ndarray) -> np.ndarray:
    """Face boxes (F, 4) x0, y0, x1, y1 → the mouth region of each (F, 4), by ``MOUTH_IN_FACE_BOX``."""
    x0, y0, x1, y1 = np.asarray(face_boxes, np.float32).T
    fx0, fy0, fx1, fy1 = MOUTH_IN_FACE_BOX
    width, height = x1 - x0, y1 - y0
    return np.stack([x0 + fx0 * width, y0 + fy0 * height, x0 + fx1 * width, y0 + fy1 * height], -1)


def central_face_mask(resolution: int, margin: float = 0.15) -> np.ndarray:
    """The face-region mask for an already-cropped portrait: the central box, (H, W) float32."""
    mask = np.zeros((resolution, resolution), np.float32)
    lo, hi = round(margin * resolution), round((1 - margin) * resolution)
    mask[lo:hi, lo:hi] = 1.0
    return mask


# -------------------------------------------------------------------------------------------------- crops

DEFAULT_MARGIN = 0.4
"""The crop's side is the face box's longer side × (1 + 2 × margin): the face fills ~55% of it, with hair,
neck and room to move."""


def square_crop(image: np.ndarray, resolution: int) -> np.ndarray:
    """Centre square crop resized to ``resolution``² (uint8 HWC)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top:top + side, left:left + side])
    return np.array(crop.resize((resolution, resolution), Image.Resampling.LANCZOS))


def square_region(box: np.ndarray, width: int, height: int, margin: float = DEFAULT_MARGIN) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square around ``box`` (x0, y0, x1, y1): the box's longer side grown by ``margin``
    of it on every side, centred on the box, shrunk to the image's shorter side if larger and shifted to lie inside
    the image (no padding is ever invented)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = min(round(max(x1 - x0, y1 - y0) * (1 + 2 * margin)), width, height)
    left = int(np.clip(round((x0 + x1 - side) / 2), 0, width - side))
    top = int(np.clip(round((y0 + y1 - side) / 2), 0, height - side))
    return left, top, side


def crop_frames(frames: np.ndarray, region: tuple[int, int, int], resolution: int) -> np.ndarray:
    """Cut ``region`` out of uint8 (..., H, W, 3) frames and resize it to ``resolution``²."""
    left, top, side = region
    interpolation = cv2.INTER_AREA if side >= resolution else cv2.INTER_CUBIC
    crops = [cv2.resize(np.ascontiguousarray(f[top:top + side, left:left + side]), (resolution, resolution),
                        interpolation=interpolation) for f in frames.reshape(-1, *frames.shape[-3:])]
    return np.stack(crops).reshape(*frames.shape[:-3], resolution, resolution, 3)


def points_in_crop(points: np.ndarray, region: tuple[int, int, int], resolution: int) -> np.ndarray:
    """Points (..., 2) x, y in source pixels → pixels of the ``resolution``² crop of ``region`` (float32; NaN stays
    NaN, points outside the crop stay outside)."""
    left, top, side = region
    moved = (np.asarray(points, np.float32) - np.array([left, top], np.float32)) * (resolution / side)
    return moved.astype(np.float32)


def boxes_in_crop(boxes: np.ndarray, region: tuple[int, int, int], resolution: int) -> np.ndarray:
    """Boxes (..., 4) in source pixels → pixels of the ``resolution``² crop of ``region``, clipped to it."""
    boxes = np.asarray(boxes, np.float32)
    moved = points_in_crop(boxes.reshape(*boxes.shape[:-1], 2, 2), region, resolution).reshape(boxes.shape)
    return np.clip(moved, 0, resolution).astype(np.float32)


# --------------------------------------------------------------------------------------------- head speed


def _rotations(pose: np.ndarray) -> np.ndarray:
    """(F, 3) yaw/pitch/roll degrees -> (F, 3, 3) rotation matrices R = Ry(yaw) Rx(pitch) Rz(roll)."""
    yaw, pitch, roll = np.deg2rad(pose).T
    c, s, one, zero = np.cos, np.sin, np.ones_like(yaw), np.zeros_like(yaw)

    def matrix(*entries: np.ndarray) -> np.ndarray:
        return np.stack(entries, -1).reshape(-1, 3, 3)

    ry = matrix(c(yaw), zero, s(yaw), zero, one, zero, -s(yaw), zero, c(yaw))
    rx = matrix(one, zero, zero, zero, c(pitch), -s(pitch), zero, s(pitch), c(pitch))
    rz = matrix(c(roll), -s(roll), zero, s(roll), c(roll), zero, zero, zero, one)
    return ry @ rx @ rz


def head_speed(pose: np.ndarray) -> np.ndarray:
    """Angular speed in degrees per frame: the rotation angle between consecutive head orientations.
    The first frame has no predecessor and copies the second."""
    r = _rotations(pose)
    cos = (np.einsum("fij,fij->f", r[:-1], r[1:]) - 1) / 2  # trace(R_t^T R_t+1) = 1 + 2 cos(angle)
    speed = np.rad2deg(np.arccos(np.clip(cos, -1, 1)))
    if len(speed) == 0:  # a single frame does not move
        return np.zeros(len(pose), np.float32)
    return np.concatenate([speed[:1], speed]).astype(np.float32)
