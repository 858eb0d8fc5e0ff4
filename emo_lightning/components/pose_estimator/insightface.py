"""Head speed from insightface's 3-D landmarks (the ``1k3d68`` model of a pack such as ``buffalo_l``)."""

from __future__ import annotations

import numpy as np

from emo_lightning.components.base import PoseEstimator
from emo_lightning.components.face_detector.insightface import face_analysis
from emo_lightning.geometry import head_speed
from emo_lightning.registry import register


@register("pose_estimator", "insightface", tiny={})
class InsightFacePoseEstimator(PoseEstimator):
    """6-DoF head pose per frame from 68 3-D landmarks fitted in each face box (insightface's ``landmark_3d_68``
    task gives pitch, yaw, roll); the speed is the rotation angle between consecutive head orientations."""

    def __init__(self, model: str = "buffalo_l", root: str = "~/.insightface"):
        self.landmarks = face_analysis(model, root, ["landmark_3d_68"], 640).models["landmark_3d_68"]
        from insightface.app.common import Face  # importable once face_analysis() succeeded

        self._face = Face

    def speed(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        poses = []
        for frame, box in zip(frames, boxes, strict=True):
            face = self._face(bbox=np.asarray(box, np.float32), kps=None, det_score=1.0)
            self.landmarks.get(np.ascontiguousarray(frame[..., ::-1]), face)  # BGR in; sets face.pose
            pitch, yaw, roll = face.pose
            poses.append((yaw, pitch, roll))
        return head_speed(np.asarray(poses, np.float32))
