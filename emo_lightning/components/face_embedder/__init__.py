"""Face embedders: RGB image (+ face box) → L2-normalised identity embedding (F-SIM, identity drift)."""

from emo_lightning.components.face_embedder import dlib_resnet, insightface  # noqa: F401  (register built-ins)
