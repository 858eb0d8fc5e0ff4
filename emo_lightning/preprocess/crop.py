"""Square face crops, the same for training clips and single portraits."""

from __future__ import annotations

import numpy as np

from emo_lightning.components.base import FaceDetector
from emo_lightning.geometry import DEFAULT_MARGIN, boxes_in_crop, boxes_to_mask, crop_frames, square_region
from emo_lightning.media import MediaError
from emo_lightning.preprocess.faces import main_face

DEFAULT_MIN_FACE = 0.08
"""Faces whose shorter side is below this share of the image's shorter side are ignored."""


class NoFaceError(MediaError):
    """No face (above the size limit) was found in an image."""


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
