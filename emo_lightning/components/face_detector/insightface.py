"""insightface's face detector (SCRFD / RetinaFace from a model pack such as ``buffalo_l``).

insightface ships no models and would download them at run time; here they are only ever read from disk: a model
pack folder given directly, or ``<root>/models/<name>`` (insightface's own layout, ``~/.insightface`` by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emo_lightning.components.base import FaceDetector
from emo_lightning.registry import register

INSTALL_HINT = ("pip install onnx onnxruntime && pip install --no-deps insightface "
                "(--no-deps: its opencv-python dependency would replace opencv-python-headless<5)")


def model_pack(model: str, root: str) -> Path:
    """The folder of insightface model pack ``model`` (a folder path, or a name under ``<root>/models``).

    Raises FileNotFoundError naming the path and how to get the models when it holds no ``.onnx`` file.
    """
    direct = Path(model).expanduser()
    folder = direct if direct.is_dir() else Path(root).expanduser() / "models" / model
    if not any(folder.glob("*.onnx")):
        raise FileNotFoundError(
            f"insightface models {model!r} not found: {folder} holds no .onnx files. insightface downloads them only "
            f"at run time, which is never done here: on a machine with internet run `python -c \"from "
            f"insightface.app import FaceAnalysis; FaceAnalysis('{Path(model).name}')\"` (or unzip {Path(model).name}"
            f".zip from insightface's model zoo) and copy ~/.insightface/models/{Path(model).name} to {folder}, or "
            f"point `model` at the folder holding the .onnx files")
    return folder


def face_analysis(model: str, root: str, modules: list[str], det_size: int) -> Any:
    """An insightface ``FaceAnalysis`` on the CPU with only ``modules`` loaded (detection is always loaded)."""
    folder = model_pack(model, root)
    try:
        from insightface.app import FaceAnalysis
    except ImportError as err:
        raise ImportError(f"the insightface components need insightface: {INSTALL_HINT}") from err
    app = FaceAnalysis(name=str(folder), allowed_modules=["detection", *modules],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(det_size, det_size))
    return app


@register("face_detector", "insightface", tiny={"det_size": 320})
class InsightFaceDetector(FaceDetector):
    """insightface's detector of model pack ``model`` (``buffalo_l``: SCRFD-10G) at ``det_size``² input."""

    def __init__(self, model: str = "buffalo_l", root: str = "~/.insightface", det_size: int = 640,
                 min_score: float = 0.5):
        self.app = face_analysis(model, root, [], det_size)
        self.min_score = min_score

    def detect(self, image: np.ndarray) -> np.ndarray:
        faces = self.app.get(np.ascontiguousarray(image[..., ::-1]))  # insightface takes BGR
        rows = np.array([[*face.bbox[:4], face.det_score] for face in faces], np.float32).reshape(-1, 5)
        rows = rows[rows[:, 4] >= self.min_score]
        return rows[np.argsort(-rows[:, 4], kind="stable")]
