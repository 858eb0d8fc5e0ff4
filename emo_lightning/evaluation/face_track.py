"""Face boxes through a video, and the square crops that SyncNet-style models see."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import median_filter

from emo_lightning.components.base import FaceDetector
from emo_lightning.preprocess.faces import face_track


def track_faces(detector: FaceDetector, frames: np.ndarray, min_found: float = 0.5, min_face: float = 0.08
                ) -> np.ndarray:
    """(F, 4) boxes x0, y0, x1, y1 by preprocessing's rule (:func:`~emo_lightning.preprocess.faces.face_track`: the
    largest face per frame, gaps filled from the nearest frame with one), smoothed by a 5-frame median. Raises
    ValueError when faces are found in under ``min_found`` of the frames."""
    boxes, found = face_track(frames, detector, min_face)
    if found.sum() < max(1, min_found * len(frames)):
        raise ValueError(f"a face was found in only {found.sum()} of {len(frames)} frames")
    return median_filter(boxes.astype(np.float64), size=(5, 1), mode="nearest")


def sync_crops(frames: np.ndarray, boxes: np.ndarray, size: int, scale: float = 0.4) -> torch.Tensor:
    """uint8 (F, 3, size, size) face crops framed as syncnet_python's pipeline frames them: a square of side
    2·s·(1 + scale) around the box centre (s = half the box's longer side), reaching 2·s·scale further below the
    centre than above it; outside the image is grey."""
    crops = []
    for frame, (x0, y0, x1, y1) in zip(frames, boxes, strict=True):
        half = max(x1 - x0, y1 - y0) / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        top, bottom = cy - half, cy + half * (1 + 2 * scale)
        left, right = cx - half * (1 + scale), cx + half * (1 + scale)
        pad = int(np.ceil(max(0, -top, -left, bottom - frame.shape[0], right - frame.shape[1]))) + 1
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
        crop = padded[int(top) + pad : int(bottom) + pad, int(left) + pad : int(right) + pad]
        image = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float()
        crops.append(F.interpolate(image, size=(size, size), mode="bilinear", antialias=True,
                                   align_corners=False)[0].round().clamp(0, 255).byte())
    return torch.stack(crops)
