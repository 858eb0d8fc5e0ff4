"""Training data: procedural synthetic talking faces and their LightningDataModule (preprocessed real video:
:mod:`emo_lightning.data.preprocessed`)."""

from emo_lightning.data.datamodule import SyntheticDataModule
from emo_lightning.data.synthetic import (
    FaceIdentity,
    SyntheticTalkingFaces,
    face_boxes,
    head_motion,
    make_clip,
    measure_mouth_open,
    mouth_from_loudness,
    mouth_masks,
    render_face,
    render_faces,
    synth_speech,
)

__all__ = [
    "FaceIdentity",
    "SyntheticDataModule",
    "SyntheticTalkingFaces",
    "face_boxes",
    "head_motion",
    "make_clip",
    "measure_mouth_open",
    "mouth_from_loudness",
    "mouth_masks",
    "render_face",
    "render_faces",
    "synth_speech",
]
