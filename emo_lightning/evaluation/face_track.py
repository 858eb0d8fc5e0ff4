"""Face boxes through a video, and the square crops that SyncNet-style models see."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import median_filter


def track_faces(detector: object, frames: np.ndarray, min_found: float = 0.5) -> np.ndarray:
    """(F, 4) boxes x0, y0, x1, y1: each frame's largest detected face, gaps filled from the nearest frame with a
    face, smoothed by a 5-frame median. Raises ValueError when faces are found in under ``min_found`` of frames."""
    boxes = np.full((len(frames), 4), np.nan)
    for i, frame in enumerate(frames):
        faces = detector.detect(frame)
        if len(faces):
            areas = (faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])
            boxes[i] = faces[int(areas.argmax()), :4]
    found = np.flatnonzero(np.isfinite(boxes[:, 0]))
    if len(found) < max(1, min_found * len(frames)):
        raise ValueError(f"a face was found in only {len(found)} of {len(frames)} frames")
    nearest = found[np.abs(np.arange(len(frames))[:, None] - found[None]).argmin(1)]
    return median_filter(boxes[nearest], size=(5, 1), mode="nearest")


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
