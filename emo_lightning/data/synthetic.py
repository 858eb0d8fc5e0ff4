"""Procedural synthetic talking faces: a cartoon head that opens its mouth with the loudness of a
speech-like audio signal while it turns its head.

Everything is drawn with numpy, so a data set needs no files, an item costs a few milliseconds, and the
lip-sync target (mouth opening = function of loudness) is known exactly and can be measured back from
pixels with `measure_mouth_open`.

Geometry is in normalised frame coordinates: x and y run over [-1, 1] (y down), the face is an ellipse
with half-axes `FaceIdentity.face_axes` and every feature is placed relative to those axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import ArrayLike

from emo_lightning.geometry import boxes_to_mask, head_speed
from emo_lightning.model.stages import Stage

if TYPE_CHECKING:
    from emo_lightning.components.face_locator.landmark_map import LandmarkMap

Color = tuple[int, int, int]

POSE_LIMITS = (30.0, 20.0, 15.0)  # max |yaw|, |pitch|, |roll| in degrees
HAIR_STYLES = ("short", "long", "bun")

_SUPERSAMPLE = 2
_HEAD_SHIFT = (0.12, 0.10)  # head-centre translation at full yaw / pitch
_FEATURE_SHIFT = 0.25  # feature parallax at full yaw / pitch, in face half-axes
_HEAD_SCALE = 1.1  # head + hair extent relative to the face ellipse; defines the face box
_MOUTH_Y = 0.38  # mouth centre below the face centre, in face half-heights
_MOUTH_A = 0.30  # mouth-interior half-width, in face half-widths
_MOUTH_B = 0.22  # mouth-interior half-height at full opening, in face half-heights (22% of face height)
_LIP_A, _LIP_B = 0.40, 0.06  # lip half-width and lip margin around the interior
_SPEECH_GAIN = 0.3  # waveform amplitude of a full-loudness syllable
_SPLITS = {"train": 0, "val": 1, "test": 2}


def _mix(a: ArrayLike, b: ArrayLike, t: float) -> np.ndarray:
    return (1 - t) * np.asarray(a, float) + t * np.asarray(b, float)


def _color(c: np.ndarray) -> Color:
    r, g, b = np.clip(np.round(c), 0, 255).astype(int).tolist()
    return r, g, b


@dataclass(frozen=True)
class FaceIdentity:
    """Appearance of one synthetic person. Colours are RGB in 0..255."""

    face_axes: tuple[float, float]  # half-width, half-height of the face ellipse
    skin: Color
    hair: Color
    hair_style: str  # one of HAIR_STYLES
    eyes: Color
    background: Color
    lips: Color
    mouth: Color  # mouth interior: dark, so the opening reads at 32x32

    @classmethod
    def sample(cls, rng: np.random.Generator) -> FaceIdentity:
        skin = _mix((245, 210, 185), (115, 75, 50), rng.uniform()) + rng.uniform(-12, 12, 3)
        hair = np.array([(25, 20, 20), (90, 55, 30), (215, 180, 110), (160, 60, 25), (170, 170, 170)])
        hair = hair[rng.integers(len(hair))] + rng.uniform(-15, 15, 3)
        eyes = np.array([(70, 45, 25), (50, 90, 160), (60, 120, 70), (40, 40, 50)])
        eyes = eyes[rng.integers(len(eyes))] + rng.uniform(-10, 10, 3)
        while True:  # a background that does not blend into the face
            background = rng.uniform(0, 255, 3)
            if np.linalg.norm(background - skin) > 90:
                break
        return cls(
            face_axes=(float(rng.uniform(0.46, 0.56)), float(rng.uniform(0.60, 0.70))),
            skin=_color(skin),
            hair=_color(hair),
            hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
            eyes=_color(eyes),
            background=_color(background),
            lips=_color(_mix(skin, (195, 45, 60), rng.uniform(0.5, 0.7))),
            mouth=_color(rng.uniform((20, 0, 5), (50, 20, 30))),
        )


# --------------------------------------------------------------------------------------------- audio


def synth_speech(
    rng: np.random.Generator, duration_s: float, sample_rate: int = 16000, fps: float = 25.0
) -> tuple[np.ndarray, np.ndarray]:
    """Speech-like audio: a voiced harmonic tone (random pitch, slow intonation) gated by syllable
    envelopes at 3-6 Hz with occasional pauses.

    Returns the waveform (S,) float32 and the loudness per video frame (F,) in [0, 1]: frame RMS relative
    to a sustained full-amplitude syllable, so equal loudness means the same thing in every clip.
    """
    num_samples, num_frames = round(duration_s * sample_rate), round(duration_s * fps)
    t = np.arange(num_samples) / sample_rate

    f0 = rng.uniform(90, 250) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t + rng.uniform(0, 7)))
    harmonics = np.arange(1, 9)
    weights = harmonics ** -rng.uniform(0.5, 1.5) * rng.uniform(0.5, 1.5, len(harmonics))
    weights /= np.linalg.norm(weights)  # unit norm -> the tone's RMS is 1/sqrt(2)
    tone = np.sin(np.outer(2 * np.pi * np.cumsum(f0) / sample_rate, harmonics)) @ weights

    rate = rng.uniform(3, 6)  # syllables per second
    n = int(duration_s * rate / 0.7) + 3  # enough syllables to cover the clip
    lengths = rng.uniform(0.7, 1.3, n) / rate
    gaps = np.where(rng.random(n) < 0.2, rng.uniform(0.15, 0.5, n), 0.0)  # pauses
    amplitudes = rng.uniform(0.45, 1.0, n)
    starts = np.concatenate([[0.0], np.cumsum(lengths + gaps)[:-1]]) - rng.uniform(0, lengths[0] + gaps[0])
    k = np.searchsorted(starts, t, side="right") - 1
    phase = (t - starts[k]) / lengths[k]
    envelope = np.where(phase < 1, amplitudes[k] * np.sin(np.pi * phase) ** 2, 0.0)

    wave = _SPEECH_GAIN * envelope * tone + 0.002 * rng.standard_normal(num_samples)
    edges = np.minimum(np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(int), num_samples)
    rms = np.sqrt(np.add.reduceat(wave**2, edges[:-1]) / np.maximum(np.diff(edges), 1))
    loudness = np.clip(rms / (_SPEECH_GAIN / np.sqrt(2)), 0, 1)
    return wave.astype(np.float32), loudness.astype(np.float32)


def mouth_from_loudness(loudness: np.ndarray) -> np.ndarray:
    """Lip-sync ground truth: a centred (non-lagging) 3-tap smoothing of the loudness, scaled by 1.2."""
    padded = np.pad(loudness, 1, mode="edge")
    smooth = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    return np.clip(1.2 * smooth, 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------------------ head pose


def head_motion(
    rng: np.random.Generator, num_frames: int, fps: float = 25.0
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random yaw/pitch/roll trajectory (F, 3) in degrees, plus its speed (F,) in degrees/frame.

    Each axis is a sum of slow sinusoids evaluated on a time axis whose rate itself oscillates, so the
    head alternates between calm and quick turns; a per-clip activity level makes some clips still."""
    activity = rng.uniform(0.15, 1.0)
    t = rng.uniform(0, 10) + np.arange(num_frames) / fps
    warp = np.exp(0.7 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t + rng.uniform(0, 7)))
    tau = t[0] + np.cumsum(warp) / fps
    amps, freqs, phases = (rng.uniform(lo, hi, (3, 3, 1)) for lo, hi in ((0.2, 0.6), (0.05, 0.4), (0, 7)))
    raw = (amps * np.sin(2 * np.pi * freqs * tau + phases)).sum(1)  # 3 axes x 3 sinusoids
    raw += rng.normal(0, 0.3, (3, 1))
    pose = (np.array(POSE_LIMITS)[:, None] * np.tanh(activity * raw)).T
    return pose.astype(np.float32), head_speed(pose)


# ---------------------------------------------------------------------------------------- rendering


def _head_centre(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head translates a little with yaw and pitch, so the face box moves over a clip."""
    yaw, pitch = np.deg2rad(pose[:, 0]), np.deg2rad(pose[:, 1])
    return (
        _HEAD_SHIFT[0] / math.sin(math.radians(POSE_LIMITS[0])) * np.sin(yaw),
        _HEAD_SHIFT[1] / math.sin(math.radians(POSE_LIMITS[1])) * np.sin(pitch),
    )


def _face_coords(pose: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Face-local coordinates (x, y), each (F, size, size), of the pixel centres of a size x size grid:
    relative to the head centre and rotated by -roll. Features additionally subtract `_feature_offset`."""
    grid = ((np.arange(size) + 0.5) / size * 2 - 1).astype(pose.dtype)
    cx, cy = _head_centre(pose)
    roll = np.deg2rad(pose[:, 2])[:, None, None]
    u, v = grid[None, None, :] - cx[:, None, None], grid[None, :, None] - cy[:, None, None]
    return np.cos(roll) * u + np.sin(roll) * v, -np.sin(roll) * u + np.cos(roll) * v


def _feature_offset(identity: FaceIdentity, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parallax of the eyes/mouth inside the face: turning the head moves them towards the turn."""
    ax, ay = identity.face_axes
    yaw, pitch, _ = np.deg2rad(pose).T[..., None, None]
    return _FEATURE_SHIFT * ax * np.sin(yaw), _FEATURE_SHIFT * ay * np.sin(pitch)


def _inside(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1


def render_faces(
    identity: FaceIdentity, mouth_open: np.ndarray, pose: np.ndarray, resolution: int = 32
) -> np.ndarray:
    """Render F frames at once: mouth_open (F,) in [0, 1], pose (F, 3) degrees -> uint8 (F, H, W, 3)."""
    n = resolution * _SUPERSAMPLE
    pose = np.asarray(pose, np.float32).reshape(-1, 3)
    ax, ay = identity.face_axes
    x, y = _face_coords(pose, n)
    fx, fy = _feature_offset(identity, pose)
    xf, yf = x - fx, y - fy

    # Paint palette indices back to front (cheaper than painting RGB), then look the colours up.
    colors = (identity.background, identity.skin, identity.hair, identity.eyes, identity.lips)
    palette, (skin, hair, eyes, lips) = np.array(colors, np.float32), range(1, 5)
    labels = np.zeros(x.shape, np.uint8)
    if identity.hair_style == "long":
        labels[_inside(x, y, 0, 0, 1.1 * ax, 1.08 * ay) & (y < 0.55 * ay)] = hair
    labels[_inside(x, y, 0, 0, ax, ay)] = skin
    labels[_inside(x, y, 0, 0, 1.06 * ax, 1.06 * ay) & (yf < -0.5 * ay)] = hair
    if identity.hair_style == "bun":
        labels[_inside(x, y, 0, -0.95 * ay, 0.15 * ay, 0.15 * ay)] = hair
    for side in (-1, 1):
        labels[_inside(xf, yf, side * 0.36 * ax, -0.42 * ay, 0.17 * ax, 0.05 * ay)] = hair  # eyebrows
        labels[_inside(xf, yf, side * 0.36 * ax, -0.22 * ay, 0.13 * ax, 0.09 * ay)] = eyes
    xm, ym = xf, yf - _MOUTH_Y * ay
    half_height = np.asarray(mouth_open, np.float32).reshape(-1, 1, 1) * np.float32(_MOUTH_B * ay)
    labels[_inside(xm, ym, 0, 0, _LIP_A * ax, half_height + _LIP_B * ay)] = lips
    canvas = palette[labels]

    # Mouth interior: exact coverage along the face's vertical axis (box filter over one subpixel), so
    # the drawn area is proportional to the opening even when it is thinner than a pixel.
    pixel = np.float32(2 / n)
    h = half_height * np.sqrt(np.clip(1 - (xm / np.float32(_MOUTH_A * ax)) ** 2, 0, None))
    coverage = np.clip(np.minimum(ym + pixel / 2, h) - np.maximum(ym - pixel / 2, -h), 0, pixel) / pixel
    canvas += coverage[..., None] * (np.asarray(identity.mouth, np.float32) - canvas)

    frames = canvas.reshape(len(pose), resolution, _SUPERSAMPLE, resolution, _SUPERSAMPLE, 3).mean((2, 4))
    return np.round(frames).astype(np.uint8)


def render_face(
    identity: FaceIdentity,
    mouth_open: float,
    pose: tuple[float, float, float] = (0.0, 0.0, 0.0),
    resolution: int = 32,
) -> np.ndarray:
    """Render one frame: mouth_open in [0, 1], pose = (yaw, pitch, roll) degrees -> uint8 (H, W, 3)."""
    return render_faces(identity, np.array([mouth_open]), np.array([pose]), resolution)[0]


def _around_mouth(identity: FaceIdentity, pose: np.ndarray, resolution: int, half_width: float,
                  half_height: float) -> np.ndarray:
    """bool (F, H, W): the pixels of an ellipse at the mouth centre, half-axes in face half-axes, grown by a
    pixel so that partly covered pixels count."""
    ax, ay = identity.face_axes
    x, y = _face_coords(pose, resolution)
    fx, fy = _feature_offset(identity, pose)
    pixel = 2 / resolution
    return _inside(x - fx, y - fy, 0, _MOUTH_Y * ay, half_width * ax + pixel, half_height * ay + pixel)


def measure_mouth_open(
    frame: np.ndarray, identity: FaceIdentity, pose: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> float:
    """Measure the mouth opening in [0, 1] back from the pixels of a rendered (or generated) frame.

    Around the mouth every pixel is a blend of skin, lip and mouth-interior colour; solving for the blend
    weights gives the interior coverage per pixel, whose sum is the interior area, proportional to the
    opening. `pose` places the mouth; pass the pose the frame was rendered with.
    """
    resolution = frame.shape[0]
    ax, ay = identity.face_axes
    pixel = 2 / resolution
    region = _around_mouth(identity, np.asarray(pose, float).reshape(1, 3), resolution, _MOUTH_A, _MOUTH_B)[0]

    skin = np.asarray(identity.skin, float)
    basis = np.stack([np.asarray(identity.lips, float) - skin, np.asarray(identity.mouth, float) - skin], 1)
    weights = np.linalg.pinv(basis) @ (frame[region].astype(float) - skin).T  # (2, pixels)
    area = weights[1].sum() * pixel**2
    return float(np.clip(area / (np.pi * _MOUTH_A * ax * _MOUTH_B * ay), 0, 1))


def face_boxes(identity: FaceIdentity, pose: np.ndarray, resolution: int) -> np.ndarray:
    """Pixel boxes (F, 4) x0, y0, x1, y1 around the head (face ellipse grown by the hair margin)."""
    pose = np.asarray(pose, float).reshape(-1, 3)
    ax, ay = _HEAD_SCALE * np.array(identity.face_axes)
    cx, cy = _head_centre(pose)
    roll = np.deg2rad(pose[:, 2])
    half_w = np.sqrt((ax * np.cos(roll)) ** 2 + (ay * np.sin(roll)) ** 2)
    half_h = np.sqrt((ax * np.sin(roll)) ** 2 + (ay * np.cos(roll)) ** 2)
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1)
    return np.clip((boxes + 1) / 2 * resolution, 0, resolution).astype(np.float32)


def mouth_masks(identity: FaceIdentity, pose: np.ndarray, resolution: int) -> np.ndarray:
    """float32 (F, H, W): 1 on the pixels the lips can cover at full opening in each frame's pose. It does not
    depend on the opening, so a loss weighted by it tells the model where the mouth is, never how open."""
    pose = np.asarray(pose, np.float32).reshape(-1, 3)
    return _around_mouth(identity, pose, resolution, _LIP_A, _MOUTH_B + _LIP_B).astype(np.float32)


_LANDMARK_COUNTS = {"face_oval": 32, "right_eye": 12, "left_eye": 12, "right_eyebrow": 12, "left_eyebrow": 12,
                    "lips_outer": 16, "lips_inner": 16}
LANDMARK_REGIONS = {name: np.arange(start, start + count) for name, start, count in zip(
    _LANDMARK_COUNTS, np.cumsum([0, *_LANDMARK_COUNTS.values()]), _LANDMARK_COUNTS.values(), strict=False)}
"""Regions of :func:`face_landmarks`' points, named as a landmark model names them (``FaceLandmarks.regions``): each
an ordered closed contour. The drawn face has no nose."""


def face_landmarks(identity: FaceIdentity, mouth_open: np.ndarray, pose: np.ndarray, resolution: int) -> np.ndarray:
    """The drawn face's landmark points, exactly: float32 (F, P, 2) x, y in pixels (``LANDMARK_REGIONS``), contours
    sampled along the ellipses that ``render_faces`` paints (face, eyes, eyebrows, lips, mouth interior)."""
    pose = np.asarray(pose, np.float64).reshape(-1, 3)
    ax, ay = identity.face_axes
    fx, fy = (np.asarray(v, np.float64).reshape(-1) for v in _feature_offset(identity, pose))
    half = np.broadcast_to(np.asarray(mouth_open, np.float64).reshape(-1), fx.shape) * _MOUTH_B * ay
    one = np.ones_like(fx)
    mouth_y = fy + _MOUTH_Y * ay
    ellipses = {  # centre x, centre y, half-width, half-height in face-local coordinates, each (F,)
        "face_oval": (0 * one, 0 * one, ax * one, ay * one),
        "right_eye": (fx - 0.36 * ax, fy - 0.22 * ay, 0.13 * ax * one, 0.09 * ay * one),  # the subject's own right
        "left_eye": (fx + 0.36 * ax, fy - 0.22 * ay, 0.13 * ax * one, 0.09 * ay * one),
        "right_eyebrow": (fx - 0.36 * ax, fy - 0.42 * ay, 0.17 * ax * one, 0.05 * ay * one),
        "left_eyebrow": (fx + 0.36 * ax, fy - 0.42 * ay, 0.17 * ax * one, 0.05 * ay * one),
        "lips_outer": (fx, mouth_y, _LIP_A * ax * one, half + _LIP_B * ay),
        "lips_inner": (fx, mouth_y, _MOUTH_A * ax * one, half),
    }
    contours = []
    for name, count in _LANDMARK_COUNTS.items():
        cx, cy, a, b = (v[:, None] for v in ellipses[name])
        angle = 2 * np.pi * np.arange(count) / count
        contours.append(np.stack([cx + a * np.cos(angle), cy + b * np.sin(angle)], -1))
    x, y = np.moveaxis(np.concatenate(contours, 1), -1, 0)
    hx, hy = _head_centre(pose)
    roll = np.deg2rad(pose[:, 2])[:, None]
    u = np.cos(roll) * x - np.sin(roll) * y + hx[:, None]  # back from face-local to frame coordinates
    v = np.sin(roll) * x + np.cos(roll) * y + hy[:, None]
    return ((np.stack([u, v], -1) + 1) / 2 * resolution).astype(np.float32)


# -------------------------------------------------------------------------------------------- clips


def make_clip(
    rng_or_seed: np.random.Generator | int,
    num_frames: int,
    resolution: int = 32,
    fps: float = 25.0,
    sample_rate: int = 16000,
    identity: FaceIdentity | None = None,
) -> dict[str, np.ndarray]:
    """A talking-face clip: `frames` uint8 (F, H, W, 3), `audio` float32 (S,) with S = round(F * sr / fps),
    `loudness`, `mouth_open`, `speed` (F,), `pose` (F, 3) degrees, `boxes` (F, 4) pixels, `mask` (H, W) and
    `lip_mask` (F, H, W) (see `mouth_masks`) and `landmarks` (F, P, 2) pixels (see `face_landmarks`)."""
    rng = np.random.default_rng(rng_or_seed)
    identity = identity or FaceIdentity.sample(rng)
    audio, loudness = synth_speech(rng, num_frames / fps, sample_rate, fps)
    pose, speed = head_motion(rng, num_frames, fps)
    mouth_open = mouth_from_loudness(loudness)
    boxes = face_boxes(identity, pose, resolution)
    return {
        "frames": render_faces(identity, mouth_open, pose, resolution),
        "audio": audio,
        "loudness": loudness,
        "mouth_open": mouth_open,
        "pose": pose,
        "speed": speed,
        "boxes": boxes,
        "mask": boxes_to_mask(boxes, resolution),
        "lip_mask": mouth_masks(identity, pose, resolution),
        "landmarks": face_landmarks(identity, mouth_open, pose, resolution),
    }


def _images(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 in [-1, 1], channels first: (3, H, W) or (3, F, H, W)."""
    images = torch.from_numpy(frames).float() / 127.5 - 1
    return images.permute(2, 0, 1) if images.ndim == 3 else images.permute(3, 0, 1, 2)


class SyntheticTalkingFaces(torch.utils.data.Dataset):
    """Procedural talking-face clips, generated on the fly.

    Item i depends only on (seed, split, i): its random stream is seeded with all three, so different
    splits draw their identities and audio from independent streams (held-out people and speech).

    stage 1 (reference net): `reference` (3, H, W) and `frames` (3, 1, H, W), two frames of one clip.
    stages 2 and 3 (video): `reference` (3, H, W) the person with a closed mouth, `motion` (3, N, H, W)
    the preceding frames, `frames` (3, F, H, W) the target frames, `audio` (S,) with
    S = round(F * sample_rate / fps) aligned with the targets, and per target frame `speed`, `mouth_open`,
    `loudness` (F,) and `pose` (F, 3). Every stage has `mask` (1, H, W), the union of the face boxes, and
    `lip_mask` (1, F, H, W), the mouth region of each target frame (for `lip_loss_weight`), and `sample_id`, the
    item's index (it seeds the item's noise in training: see :mod:`emo_lightning.training.draws`). With
    ``landmark_style`` (a landmark face locator's), every stage also has ``landmark_map`` (1, F, H, W): the target
    frames' landmarks (:func:`face_landmarks`) drawn by it.
    """

    def __init__(
        self,
        num_samples: int,
        stage: int | str = 2,
        resolution: int = 32,
        num_frames: int = 8,
        motion_frames: int = 4,
        fps: float = 25.0,
        sample_rate: int = 16000,
        seed: int = 0,
        split: str = "train",
        landmark_style: LandmarkMap | None = None,
    ) -> None:
        if stage not in (1, 2, 3):
            raise ValueError(f"stage must be 1, 2 or 3, got {stage}")
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        self.num_samples = num_samples
        self.stage = Stage.of(stage)
        self.resolution = resolution
        self.num_frames = num_frames
        self.motion_frames = motion_frames
        self.fps = fps
        self.sample_rate = sample_rate
        self.seed = seed
        self.split = split
        self.landmark_style = landmark_style

    def __len__(self) -> int:
        return self.num_samples

    def clip(self, index: int) -> tuple[FaceIdentity, dict[str, np.ndarray]]:
        """The identity and the full raw clip (motion + target frames) behind item `index`."""
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index])
        identity = FaceIdentity.sample(rng)
        length = self.motion_frames + self.num_frames
        return identity, make_clip(rng, length, self.resolution, self.fps, self.sample_rate, identity)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        identity, clip = self.clip(index)
        if self.stage == Stage.IMAGES:
            rng = np.random.default_rng([self.seed, _SPLITS[self.split], index, 1])
            ref, target = rng.choice(len(clip["frames"]), 2, replace=False)
            mask = boxes_to_mask(clip["boxes"][target : target + 1], self.resolution)
            return {
                **self._landmark_map(clip, slice(target, target + 1)),
                "reference": _images(clip["frames"][ref]),
                "frames": _images(clip["frames"][target : target + 1]),
                "mask": torch.from_numpy(mask)[None],
                "lip_mask": torch.from_numpy(clip["lip_mask"][target : target + 1])[None],
                "sample_id": torch.tensor(index),
            }

        n = self.motion_frames
        samples_per_frame = self.sample_rate / self.fps
        start, length = round(n * samples_per_frame), round(self.num_frames * samples_per_frame)
        audio = clip["audio"][start : start + length]
        target = slice(n, None)
        return {
            **self._landmark_map(clip, target),
            "reference": _images(render_face(identity, 0.0, tuple(clip["pose"][0]), self.resolution)),
            "motion": _images(clip["frames"][:n]),
            "frames": _images(clip["frames"][target]),
            "audio": torch.from_numpy(np.pad(audio, (0, length - len(audio)))),
            "mask": torch.from_numpy(boxes_to_mask(clip["boxes"][target], self.resolution))[None],
            "lip_mask": torch.from_numpy(clip["lip_mask"][target])[None],
            "speed": torch.from_numpy(clip["speed"][target]),
            "mouth_open": torch.from_numpy(clip["mouth_open"][target]),
            "loudness": torch.from_numpy(clip["loudness"][target]),
            "pose": torch.from_numpy(clip["pose"][target]),
            "sample_id": torch.tensor(index),
        }

    def _landmark_map(self, clip: dict[str, np.ndarray], frames: slice) -> dict[str, torch.Tensor]:
        """``{"landmark_map": (1, F, H, W)}`` of the clip's ``frames``, or nothing without ``landmark_style``."""
        if self.landmark_style is None:
            return {}
        maps = self.landmark_style.draw(clip["landmarks"][frames], LANDMARK_REGIONS, self.resolution, self.resolution)
        return {"landmark_map": torch.from_numpy(maps)[None]}
