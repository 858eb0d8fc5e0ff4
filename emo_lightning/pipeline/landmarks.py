"""The facial landmarks a generated video follows, for face locators that draw them (``face_locator=landmarks``).

By default the portrait's own landmarks, the same in every frame. With a driving video (``pose_video=``), its face's
landmarks in every frame, moved onto the portrait's face: the similarity (scale + shift) that takes the driving face's
typical box (the median over the video of the landmarks' bounding box) onto the portrait's, applied to every frame, so
the driving head's motion relative to its usual place carries over while its size and position in its own frame do
not. Both faces' landmarks come from the same landmark model, so their boxes mean the same thing.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from emo_lightning import registry
from emo_lightning.components.base import FaceLandmarks
from emo_lightning.components.face_locator.landmark_map import LandmarkTrack
from emo_lightning.media import MediaError, load_image, read_video
from emo_lightning.pipeline.portrait import NO_DETECTOR, DetectorSpec, face_detector

DEFAULT_LANDMARKS = "mediapipe_mesh"
"""The landmark model ``emo predict`` uses (``emo preprocess`` stores the same one by default)."""

LandmarksSpec = str | dict
"""A registered ``landmarks`` name, or a mapping of its ``name`` and keyword arguments."""


@functools.cache
def _build_landmarks(spec_json: str) -> FaceLandmarks:
    return registry.build("landmarks", json.loads(spec_json), config_key="landmarks")


def landmark_model(spec: LandmarksSpec) -> FaceLandmarks:
    """The landmark model of ``spec``, built once per process."""
    if registry.parse_spec(spec, "landmarks")[0] == "none":
        raise ValueError("this model's face locator draws facial landmarks: choose a landmark model "
                         f"(landmarks={DEFAULT_LANDMARKS} or dlib68), not landmarks=none")
    return _build_landmarks(json.dumps(spec if isinstance(spec, str) else dict(spec), sort_keys=True))


def portrait_landmarks(path: str | Path, resolution: int, detector: DetectorSpec, model: FaceLandmarks
                       ) -> np.ndarray:
    """float32 (P, 2): the landmarks of the portrait at ``path``, in pixels of its ``resolution``² crop (the crop
    :func:`~emo_lightning.pipeline.portrait.load_portrait` makes with the same ``detector``). They are found on the
    full-size image, so that small crops still get them."""
    from emo_lightning.geometry import points_in_crop
    from emo_lightning.preprocess.crop import portrait_region

    image = load_image(path)
    if registry.parse_spec(detector, "face_detector")[0] == NO_DETECTOR:
        side = min(image.shape[:2])
        box, region = None, ((image.shape[1] - side) // 2, (image.shape[0] - side) // 2, side)
    else:
        box, region = portrait_region(image, face_detector(detector))
    points = model.detect(image, box)
    if not np.isfinite(points).all():
        raise MediaError(f"no facial landmarks found in {path} by the {type(model).__name__} landmark model; this "
                         "model's face locator needs them: use a clearer frontal portrait")
    return points_in_crop(points, region, resolution)


def driving_landmarks(path: str | Path, model: FaceLandmarks, fps: float, count: int) -> np.ndarray:
    """float32 (count, P, 2): the landmarks of the face in the video at ``path`` at ``count`` frames of rate ``fps``
    (the nearest video frame by time; a video shorter than that plays forward, then backward, and so on), in its own
    pixels. A frame whose face was not found takes the nearest frame's that was."""
    frames, video_fps = read_video(path)
    times = np.round(np.arange(count) / fps * (video_fps or fps)).astype(np.int64)
    period = max(2 * (len(frames) - 1), 1)
    index = times % period
    index = np.where(index >= len(frames), period - index, index)
    used = np.unique(index)
    found = np.stack([model.detect(frames[i]) for i in used])
    valid = np.isfinite(found).all(axis=(1, 2))
    if not valid.any():
        raise MediaError(f"no face found in the driving video {path} (pose_video) by the {type(model).__name__} "
                         "landmark model")
    nearest = np.flatnonzero(valid)[np.abs(np.flatnonzero(valid)[None] - np.arange(len(used))[:, None]).argmin(1)]
    return found[nearest][np.searchsorted(used, index)]


def _box_centre_and_size(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (..., 2) and size (...,) (the geometric mean of width and height) of points' bounding boxes."""
    lo, hi = points.min(-2), points.max(-2)
    return (lo + hi) / 2, np.sqrt(np.prod(np.maximum(hi - lo, 1e-6), -1))


def onto_portrait(driving: np.ndarray, portrait: np.ndarray) -> np.ndarray:
    """Driving landmarks (T, P, 2) moved by the similarity that takes their median bounding box onto the portrait
    landmarks' (P, 2) box (see the module docstring)."""
    centres, sizes = _box_centre_and_size(driving)
    target_centre, target_size = _box_centre_and_size(portrait)
    scale = target_size / np.median(sizes)
    return ((driving - np.median(centres, 0)) * scale + target_centre).astype(np.float32)


def job_landmarks(image: str | Path, resolution: int, detector: DetectorSpec, landmarks: LandmarksSpec,
                  pose_video: str | Path | None = None, fps: float = 25.0, count: int = 1) -> LandmarkTrack:
    """The landmark track of one generation job: the portrait's (one row), or ``pose_video``'s face moved onto the
    portrait's, ``count`` frames at ``fps``."""
    model = landmark_model(landmarks)
    portrait = portrait_landmarks(image, resolution, detector, model)
    if pose_video is None:
        return LandmarkTrack(portrait[None], model.regions)
    return LandmarkTrack(onto_portrait(driving_landmarks(pose_video, model, fps, count), portrait), model.regions)
