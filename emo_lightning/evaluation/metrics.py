"""Metrics measured from pixels, so that generated and ground-truth videos go through the same code."""

from __future__ import annotations

import numpy as np

from emo_lightning.data.synthetic import POSE_LIMITS, FaceIdentity, measure_mouth_open, render_faces


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 where either series is constant."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def _pose_grid(step: float = 5.0) -> np.ndarray:
    axes = [np.arange(-limit, limit + 1e-6, step) for limit in POSE_LIMITS]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)


def estimate_poses(frames: np.ndarray, identity: FaceIdentity, step: float = 5.0) -> np.ndarray:
    """Head pose per frame (F, 3), by matching each frame against renders of the identity on a pose grid.

    A generated video moves its head by itself, so the mouth has to be found before it can be measured.
    Renders use a half-open mouth so that the match does not depend on the opening.
    """
    grid = _pose_grid(step)
    resolution = frames.shape[1]
    renders = render_faces(identity, np.full(len(grid), 0.5, np.float32), grid, resolution)
    flat_renders = renders.reshape(len(grid), -1).astype(np.float32)
    flat_frames = frames.reshape(len(frames), -1).astype(np.float32)
    # ||f - r||² = ||f||² - 2 f·r + ||r||²; the first term is constant per frame
    scores = (flat_renders**2).sum(1)[None] - 2 * flat_frames @ flat_renders.T
    return grid[scores.argmin(1)]


def measure_mouth_series(frames: np.ndarray, identity: FaceIdentity) -> np.ndarray:
    """Mouth opening in [0, 1] per frame of a video of ``identity`` (F, H, W, 3) uint8."""
    poses = estimate_poses(frames, identity)
    return np.array([measure_mouth_open(frame, identity, pose) for frame, pose in zip(frames, poses, strict=True)])


def identity_color_error(frames: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """RGB distance (0–255 scale) between the mean colour inside the face mask of the video and of the
    reference portrait: a generator that loses the identity's skin/hair colours scores high."""
    inside = mask > 0.5
    video = frames[:, inside].reshape(-1, 3).astype(float).mean(0)
    ref = reference[inside].reshape(-1, 3).astype(float).mean(0)
    return float(np.linalg.norm(video - ref))


def boundary_ratio(frames: np.ndarray, clip_length: int) -> float:
    """Mean frame-to-frame change across clip boundaries divided by the mean change inside clips
    (1 = boundaries are invisible; large = a jump every ``clip_length`` frames)."""
    change = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))  # change[t]: t -> t+1
    at_boundary = (np.arange(1, len(frames)) % clip_length) == 0
    if not at_boundary.any() or at_boundary.all():
        raise ValueError(f"{len(frames)} frames with clips of {clip_length} have no boundary to compare")
    return float(change[at_boundary].mean() / max(change[~at_boundary].mean(), 1e-8))
