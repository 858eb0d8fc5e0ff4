"""A model-free head-speed estimate from the optical flow inside the face box (works offline, no weights)."""

from __future__ import annotations

import cv2
import numpy as np

from emo_lightning.components.base import PoseEstimator
from emo_lightning.registry import register


@register("pose_estimator", "flow", tiny={"max_side": 64})
class FlowSpeedEstimator(PoseEstimator):
    """Apparent head rotation between consecutive frames, from corners tracked inside the face box.

    What it measures: Shi-Tomasi corners in frame t-1's face box are tracked into frame t (pyramidal Lucas-Kanade,
    kept when the backward track returns within 1 px) and a similarity transform is fitted to them (RANSAC, so a
    moving mouth does not count). Its rotation is the in-plane head roll; its translation, over the head radius
    (half the box's longer side), is read as the yaw/pitch that would move the face surface that far:
    ``asin(shift / radius)``. The speed is the length of that (yaw, pitch, roll) step, in degrees per frame.
    Translation of the whole head therefore counts as rotation (an upper bound for a moving body), and a
    frame where tracking fails (fewer than ``min_points`` corners) repeats the previous speed.
    """

    def __init__(self, max_side: int = 256, max_corners: int = 100, min_points: int = 6):
        self.max_side, self.max_corners, self.min_points = max_side, max_corners, min_points

    def speed(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        scale = min(1.0, self.max_side / max(frames.shape[1:3]))
        grays = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), None, fx=scale, fy=scale,
                            interpolation=cv2.INTER_AREA) if scale < 1 else cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
                 for f in frames]
        steps = np.zeros(len(frames), np.float32)
        for t in range(1, len(frames)):
            step = self._step(grays[t - 1], grays[t], boxes[t - 1] * scale)
            steps[t] = steps[t - 1] if step is None else step
        if len(frames) > 1:
            steps[0] = steps[1]
        return steps

    def _step(self, previous: np.ndarray, current: np.ndarray, box: np.ndarray) -> float | None:
        """Rotation in degrees between two grey frames, or None when too few corners track."""
        x0, y0, x1, y1 = np.round(box).astype(int)
        mask = np.zeros_like(previous)
        mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 255
        radius = max(x1 - x0, y1 - y0) / 2
        spacing = max(2.0, radius / 10)
        points = cv2.goodFeaturesToTrack(previous, self.max_corners, 0.01, spacing, mask=mask)
        if points is None or len(points) < self.min_points or radius < 4:
            return None
        tracked, ok, _ = cv2.calcOpticalFlowPyrLK(previous, current, points, None)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(current, previous, tracked, None)
        good = (ok[:, 0] == 1) & (ok_back[:, 0] == 1) & (np.linalg.norm(back - points, axis=-1)[:, 0] < 1.0)
        if good.sum() < self.min_points:
            return None
        matrix, _ = cv2.estimateAffinePartial2D(points[good], tracked[good], method=cv2.RANSAC,
                                                ransacReprojThreshold=1.0)
        if matrix is None:
            return None
        roll = np.arctan2(matrix[1, 0], matrix[0, 0])
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 1.0])
        shift = matrix @ centre - centre[:2]
        yaw, pitch = np.arcsin(np.clip(shift / radius, -1, 1))
        return float(np.degrees(np.sqrt(yaw**2 + pitch**2 + roll**2)))
