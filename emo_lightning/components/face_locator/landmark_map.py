"""Facial landmarks drawn as a map: the image the `landmarks` face locator sees, the same whichever landmark model
found the points (MediaPipe's 478-point mesh, dlib's 68 points, the synthetic faces' analytic ones).

Raw point indices differ between models, so the map is drawn from named regions, each as a stroke normalised to the
image: ordered contours (``face_oval`` closed or ``jaw`` open, ``left_eye``/``right_eye`` and, when asked, the lips)
as polylines, and regions whose point order no interface promises (``nose``, the eyebrows) as the outline of their
convex hull. A region a model does not name is left out; a frame whose face was not found (NaN) is an empty map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

CONTOURS = {"face_oval": True, "jaw": False, "left_eye": True, "right_eye": True}
"""Ordered regions drawn as polylines: name → closed."""
HULLS = ("left_eyebrow", "right_eyebrow", "nose")
"""Regions drawn as the outline of their convex hull (their point order is model-specific)."""
LIPS = ("lips_outer", "lips_inner")
_SHIFT = 4  # cv2 sub-pixel bits


@dataclass(frozen=True)
class LandmarkMap:
    """How landmark points become a map (F, H, W) in [0, 1].

    ``include_lips`` is off by default: at generation the landmarks come from the still portrait or a driving
    video, whose mouth would then be drawn into every frame and fight the audio, which alone should move the mouth.
    ``line_width``: stroke width as a share of the image's shorter side (at least one pixel).
    """

    include_lips: bool = False
    line_width: float = 0.01

    def strokes(self, regions: Mapping[str, ArrayLike]) -> list[tuple[np.ndarray, str]]:
        """(point indices, ``"closed"`` | ``"open"`` | ``"hull"``) of every region drawn, from a model's regions."""
        kinds = {name: "closed" if closed else "open" for name, closed in CONTOURS.items()}
        kinds.update(dict.fromkeys(HULLS, "hull"))
        if self.include_lips:
            kinds.update(dict.fromkeys(LIPS, "closed"))
        if "face_oval" in regions:  # a model with both draws the outline once
            kinds.pop("jaw")
        return [(np.asarray(regions[name], np.int64).ravel(), kind) for name, kind in kinds.items() if name in regions]

    def draw(self, points: ArrayLike, regions: Mapping[str, ArrayLike], height: int, width: int) -> np.ndarray:
        """float32 (F, height, width) maps of ``points`` (F, P, 2) x, y in pixels of a ``width`` × ``height`` image
        (continuous coordinates: a pixel's centre is at +0.5)."""
        points = np.asarray(points, np.float32)
        strokes = self.strokes(regions)
        thickness = max(1, round(self.line_width * min(height, width)))
        maps = np.zeros((len(points), height, width), np.uint8)
        for canvas, frame in zip(maps, points, strict=True):
            for index, kind in strokes:
                part = frame[index]
                if not np.isfinite(part).all():
                    continue
                if kind == "hull":
                    part = cv2.convexHull(part)[:, 0]
                line = np.round((part - 0.5) * (1 << _SHIFT)).astype(np.int32)
                cv2.polylines(canvas, [line], kind != "open", 255, thickness, cv2.LINE_AA, shift=_SHIFT)
        return maps.astype(np.float32) / 255


LandmarkMaps = Callable[[int, int], Tensor]
"""``(start, count) → (B, 1, count, H, W)``: the landmark maps of a video's frames ``start … start + count - 1``."""


class LandmarkTrack:
    """The landmark points a generated video follows, one row per video frame (a single row: the same face in every
    frame, e.g. the still portrait's), in pixels of the generated frames, with their model's named regions.

    A plain class, not a dataclass: Lightning's batch transfer would take a dataclass apart.
    """

    def __init__(self, points: np.ndarray, regions: Mapping[str, ArrayLike]):
        self.points, self.regions = np.asarray(points, np.float32), regions  # points (T, P, 2)

    def frames(self, start: int, count: int) -> np.ndarray:
        """Points of frames ``start … start + count - 1`` (the last row holds past the end)."""
        return self.points[np.minimum(np.arange(start, start + count), len(self.points) - 1)]

    def maps(self, style: LandmarkMap, height: int, width: int) -> LandmarkMaps:
        """The track drawn by ``style`` at ``height`` × ``width``, a clip at a time."""

        def clip_maps(start: int, count: int) -> Tensor:
            return torch.from_numpy(style.draw(self.frames(start, count), self.regions, height, width))[None, None]

        return clip_maps


def tensor_maps(maps: Tensor) -> LandmarkMaps:
    """Ready-drawn maps (B, 1, F, H, W) of a whole video (e.g. a data item's) as :data:`LandmarkMaps`."""
    return lambda start, count: maps[:, :, start:start + count]


def landmark_maps(landmarks: LandmarkTrack | Tensor | None, style: LandmarkMap | None, height: int, width: int
                  ) -> LandmarkMaps | None:
    """A video's landmark maps for a face locator with map ``style`` (None when it takes none): from a track of
    points, or from maps (B, 1, F, H, W) drawn already (a data item's)."""
    if style is None or landmarks is None:
        return None
    return landmarks.maps(style, height, width) if isinstance(landmarks, LandmarkTrack) else tensor_maps(landmarks)
