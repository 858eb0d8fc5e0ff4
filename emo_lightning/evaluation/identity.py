"""Identity and colour over a video: F-SIM (cosine similarity of the reference's face embedding and each frame's)
and drift (the same similarity and the mean face colour per window, each window against the first)."""

from __future__ import annotations

import math

import numpy as np


def cosine_to(reference: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``embeddings`` (N, D) with ``reference`` (D,); NaN rows stay NaN."""
    reference = reference / np.linalg.norm(reference)
    return embeddings @ reference / np.linalg.norm(embeddings, axis=1)


def face_colour(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean RGB (0–255) inside the middle half of each face box (cheeks, nose, mouth; little hair or background)."""
    colours = np.full((len(frames), 3), np.nan)
    for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        if not np.all(np.isfinite(box)):
            continue
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        region = frame[int(max(0, y0 + h / 4)) : int(y1 - h / 4), int(max(0, x0 + w / 4)) : int(x1 - w / 4)]
        if region.size:
            colours[i] = region.reshape(-1, 3).mean(0)
    return colours


def drift(times: np.ndarray, embeddings: np.ndarray | None, colours: np.ndarray, window_seconds: float = 5.0
          ) -> dict[str, float]:
    """Per window of ``window_seconds``: the cosine similarity of its mean embedding with the first window's, and
    the distance (0–255 RGB) of its mean face colour from the first window's; the worst window of each.
    NaN when the video is shorter than two windows' starts; no ``drift_identity`` without ``embeddings``."""
    window = np.floor(times / window_seconds).astype(int)
    present = [w for w in range(window.max() + 1) if np.any(window == w)]
    values = {"drift_colour": math.nan} if embeddings is None else {"drift_identity": math.nan,
                                                                     "drift_colour": math.nan}
    if len(present) < 2:
        return values
    colour = [np.nanmean(colours[window == w], 0) for w in present]
    values["drift_colour"] = max(float(np.linalg.norm(c - colour[0])) for c in colour[1:])
    if embeddings is not None:
        mean = [np.nanmean(embeddings[window == w], 0) for w in present]
        values["drift_identity"] = min(float(cosine_to(mean[0], m[None])[0]) for m in mean[1:])
    return values
