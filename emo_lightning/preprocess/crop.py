"""Square face crops, the same for training clips and single portraits."""

from __future__ import annotations

import cv2
import numpy as np

from emo_lightning.components.base import FaceDetector
from emo_lightning.data.synthetic import boxes_to_mask
from emo_lightning.media import MediaError
from emo_lightning.preprocess.faces import main_face

DEFAULT_MARGIN = 0.4
"""The crop's side is the face box's longer side × (1 + 2 × margin): the face fills ~55% of it, with hair,
neck and room to move."""

DEFAULT_MIN_FACE = 0.08
"""Faces whose shorter side is below this share of the image's shorter side are ignored."""


class NoFaceError(MediaError):
    """No face (above the size limit) was found in an image."""


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


def portrait_region(image: np.ndarray, detector: FaceDetector, margin: float = DEFAULT_MARGIN,
                    min_face: float = DEFAULT_MIN_FACE) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The subject's face box (largest above ``min_face``) in a portrait and the square region ``crop_portrait``
    cuts around it (``square_region``). Raises NoFaceError when no face is found."""
    box = main_face(detector.detect(image), image.shape, min_face)
    if box is None:
        raise NoFaceError(f"no face found in the {image.shape[1]}x{image.shape[0]} image "
                          f"(faces smaller than {min_face:.0%} of its shorter side are ignored)")
    return box, square_region(box, image.shape[1], image.shape[0], margin)


def crop_portrait(image: np.ndarray, detector: FaceDetector, resolution: int, margin: float = DEFAULT_MARGIN,
                  min_face: float = DEFAULT_MIN_FACE) -> tuple[np.ndarray, np.ndarray]:
    """Crop a portrait the way training clips are cropped: the subject's face (largest above ``min_face``) in a
    square grown by ``margin``, resized to ``resolution``².

    Returns the crop uint8 (resolution, resolution, 3) and its face mask float32 (resolution, resolution): 1 on
    the face box, the face locator's input. Raises NoFaceError when no face is found.
    """
    box, region = portrait_region(image, detector, margin, min_face)
    mask = boxes_to_mask(boxes_in_crop(box[None], region, resolution), resolution)
    return crop_frames(image, region, resolution), mask
