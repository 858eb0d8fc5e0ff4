"""The portrait a video starts from: the face found and cropped the way training crops it, plus its mask."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from emo_lightning import registry
from emo_lightning.geometry import central_face_mask, square_crop
from emo_lightning.media import load_image

NO_DETECTOR = "none"
"""``face_detector=none``: centre square crop and a central face box, for portraits a detector misses
(cartoons, sketches, synthetic faces) or that are already cropped."""

DEFAULT_DETECTOR = "mediapipe"
"""The face detector portraits are cropped with unless told otherwise (``conf/predict.yaml`` names the same one):
BlazeFace full-range found the face in every frame and portrait of ``benchmarks/face_detection.py``."""

DetectorSpec = str | dict[str, Any]
"""A registered ``face_detector`` name, or a mapping of its ``name`` and keyword arguments."""


@functools.cache
def _build_detector(spec_json: str) -> Any:
    return registry.build("face_detector", json.loads(spec_json), config_key="face_detector")


def face_detector(spec: DetectorSpec) -> Any:
    """The face detector of ``spec``, built once per process (its model loads once)."""
    return _build_detector(json.dumps(spec if isinstance(spec, str) else dict(spec), sort_keys=True))


def crop_face(image: np.ndarray, resolution: int, detector: DetectorSpec, source: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """(crop (res, res, 3) uint8, mask (res, res) float32) of the face in ``image`` found by ``detector``."""
    name, _ = registry.parse_spec(detector, "face_detector")
    if name == NO_DETECTOR:
        return square_crop(image, resolution), central_face_mask(resolution)
    from emo_lightning.preprocess.crop import NoFaceError, crop_portrait

    try:
        return crop_portrait(image, face_detector(detector), resolution)
    except NoFaceError as err:
        raise NoFaceError(f"no face found in {source} by the {name!r} face detector; use a clearer frontal "
                          f"portrait, or face_detector={NO_DETECTOR} to take the centre of the image as it is "
                          f"(drawings, cartoons, already-cropped faces)") from err


def load_portrait(path: str | Path, resolution: int, detector: DetectorSpec) -> tuple[Tensor, Tensor]:
    """Read any image file and crop its face: ``(3, res, res)`` in [-1, 1] and the face mask ``(1, res, res)``.

    Raises :class:`~emo_lightning.media.MediaError` (naming the file) when it is unreadable or holds no face.
    """
    crop, mask = crop_face(load_image(path), resolution, detector, str(path))
    image = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 127.5 - 1.0
    return image, torch.from_numpy(np.asarray(mask, np.float32))[None]
