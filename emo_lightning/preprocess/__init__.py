"""`emo preprocess`: real talking-head videos → a LitData streaming data set for ``data=preprocessed``.

decode (PyAV, fixed fps, segments, aligned 16 kHz audio) → faces (one box per frame, by rule) → crop (square
around the segment's face union) → head speed (a ``pose_estimator`` component) → writer (LitData chunks,
committed per video) → manifest (per-video reports, resume) → runner (inputs, worker processes, the run).

The run lives in :mod:`emo_lightning.preprocess.runner` (it needs litdata); importing this package does not,
so portrait crops work where litdata is not installed.
"""

from emo_lightning.preprocess.crop import NoFaceError, crop_portrait
from emo_lightning.preprocess.process import Settings

__all__ = ["NoFaceError", "Settings", "crop_portrait"]
