"""Facial landmarks: RGB image (+ face box) → points with named regions (lip masks, landmark sync, LMD, E-FID)."""

from emo_lightning.components.landmarks import dlib68, mediapipe_mesh  # noqa: F401  (register built-ins)
