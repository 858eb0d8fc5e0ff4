"""Per-frame signals that landmark sync compares, one value per video frame at the video's own frame rate.

* mouth change: how much the picture of the mouth changes, the mean absolute difference between consecutive frames
  of a grey patch around the lips that the landmarks hold still (centred on the lips, rotated so that the eyes are
  level, ``MOUTH_SPAN`` eye distances wide and high, each frame's patch scaled to zero mean and unit spread), so
  head motion, face size and lighting drop out and what is left is the lips, teeth and tongue moving;
* lip motion: how fast the lips change shape, the mean speed of the pose-normalised lip landmarks (eyes 1 apart, so
  it is independent of face size, position and roll);
* opening speed: how fast the mouth opens or closes, the rate of change of the gap between the inner lips (the
  landmark model's ``mouth_opening`` pairs, else the square root of the inner-lip area) over the eye distance;
* loudness: the speech band's level in dB, floored ``FLOOR_DB`` below the clip's loudest frame;
* spectral change: how fast the spectrum changes, half the distance between the dB band levels of the frames either
  side.

Frame ``f``'s audio value pools the 10-ms steps centred within its display interval ``[f, f + 1) / fps`` (the
interval the synthetic data gives a frame's loudness). Rates of change are central differences, so no signal moves
by half a frame.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.signal import stft

from emo_lightning.evaluation.face_geometry import eye_centres, eye_distance, mouth_opening, normalised_shapes

BAND_EDGES = np.geomspace(100, 8000, 17)  # 16 log-spaced bands covering speech
FLOOR_DB = 50.0
STEP_SECONDS, WINDOW_SECONDS = 0.01, 0.025
MOUTH_PATCH = (48, 32)  # pixels (width, height) of the mouth patch
MOUTH_SPAN = (1.3, 0.87)  # its extent in eye distances: the lips (≈ 0.8 wide) with a margin for jaw and chin


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """``values`` with NaN entries linearly interpolated from the finite neighbours (held at the ends)."""
    found = np.isfinite(values)
    return np.interp(np.arange(len(values)), np.flatnonzero(found), values[found])


def lip_motion(points: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """(F,) mean speed of the inner and outer lip landmarks per frame, in eye distances per frame; frames without a
    face are interpolated from their neighbours (at least two frames must have one)."""
    if len(points) < 3:
        raise ValueError(f"{len(points)} frames are too few for lip motion (at least 3)")
    lips = np.concatenate([np.asarray(regions["lips_inner"]), np.asarray(regions["lips_outer"])])
    shapes = normalised_shapes(np.asarray(points, np.float64), regions)[:, lips]
    speed = np.linalg.norm(np.gradient(shapes, axis=0), axis=-1).mean(1)
    if np.isfinite(speed).sum() < 2:
        raise ValueError("lip landmarks were found in fewer than 2 frames")
    return fill_gaps(speed)


def mouth_patches(frames: np.ndarray, points: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """(F, height, width) float32 grey patches around the lips, as :func:`mouth_change` describes, from RGB uint8
    frames ``(F, H, W, 3)``; frames without a face take the lips' position interpolated from their neighbours."""
    points = np.asarray(points, np.float64)
    if len(frames) != len(points):
        raise ValueError(f"{len(frames)} frames but landmarks for {len(points)}")
    lips = np.concatenate([np.asarray(regions["lips_outer"]), np.asarray(regions["lips_inner"])])
    left, right = eye_centres(points, regions)
    centre = points[:, lips].mean(1)
    if np.isfinite(centre[:, 0]).sum() < 2:
        raise ValueError("lip landmarks were found in fewer than 2 frames")
    centre, axis = (np.stack([fill_gaps(x[:, i]) for i in range(2)], 1) for x in (centre, right - left))
    width, height = MOUTH_PATCH
    patches = np.empty((len(frames), height, width), np.float32)
    for f, frame in enumerate(frames):
        size = float(np.linalg.norm(axis[f]))
        across = axis[f] / size
        down = np.array([-across[1], across[0]])
        to_image = np.stack([across * MOUTH_SPAN[0] * size / width, down * MOUTH_SPAN[1] * size / height], 1)
        offset = centre[f] - to_image @ np.array([width / 2, height / 2])
        grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        patches[f] = cv2.warpAffine(grey, np.concatenate([to_image, offset[:, None]], 1), (width, height),
                                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return patches


def mouth_change(frames: np.ndarray, points: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """(F,) mean absolute difference of the standardised mouth patches between frames ``f − 1`` and ``f + 1``
    (the mean of the two one-frame differences around ``f``, so the signal does not move by half a frame)."""
    if len(frames) < 3:
        raise ValueError(f"{len(frames)} frames are too few for mouth change (at least 3)")
    patches = mouth_patches(frames, points, regions)
    patches = (patches - patches.mean((1, 2), keepdims=True)) / (patches.std((1, 2), keepdims=True) + 1e-6)
    step = np.abs(np.diff(patches, axis=0)).mean((1, 2))
    return np.concatenate([step[:1], (step[:-1] + step[1:]) / 2, step[-1:]])


def opening_speed(points: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """(F,) absolute rate of change of the inner-lip gap per frame, in eye distances per frame (gaps filled as in
    :func:`lip_motion`)."""
    points = np.asarray(points, np.float64)
    if "mouth_opening" in regions:
        pairs = np.asarray(regions["mouth_opening"])
        gap = np.linalg.norm(points[:, pairs[:, 0]] - points[:, pairs[:, 1]], axis=-1).mean(1)
        gap = gap / eye_distance(points, regions)
    else:  # a model without the pairs: the side of a square as large as the inner-lip area
        gap = np.sqrt(mouth_opening(points, regions))
    if np.isfinite(gap).sum() < 2:
        raise ValueError("lip landmarks were found in fewer than 2 frames")
    return np.abs(np.gradient(fill_gaps(gap)))


def band_levels(waveform: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> np.ndarray:
    """(num_frames, 16) band levels in dB per video frame, floored ``FLOOR_DB`` below the loudest band level."""
    hop, window = round(sample_rate * STEP_SECONDS), round(sample_rate * WINDOW_SECONDS)
    needed = int(np.ceil(num_frames * sample_rate / fps)) + window
    wave = np.zeros(needed)
    wave[: min(len(waveform), needed)] = waveform[:needed]
    freqs, _, spectrum = stft(wave, sample_rate, nperseg=window, noverlap=window - hop, boundary=None, padded=False)
    power = np.abs(spectrum) ** 2
    bands = np.stack([power[(freqs >= lo) & (freqs < hi)].sum(0)
                      for lo, hi in zip(BAND_EDGES[:-1], BAND_EDGES[1:], strict=True)], 1)
    centres = (np.arange(len(bands)) * hop + window / 2) / sample_rate
    edges = np.searchsorted(centres, np.arange(num_frames + 1) / fps)
    cumulative = np.concatenate([np.zeros((1, bands.shape[1])), np.cumsum(bands, 0)])
    counts = np.maximum(edges[1:] - edges[:-1], 1)[:, None]
    pooled = (cumulative[np.maximum(edges[1:], edges[:-1] + 1)] - cumulative[edges[:-1]]) / counts
    levels = 10 * np.log10(pooled + 1e-20)
    return np.maximum(levels, levels.max() - FLOOR_DB)


def loudness(levels: np.ndarray) -> np.ndarray:
    """(F,) the speech band's level in dB from :func:`band_levels`' output, with the same floor."""
    total = 10 * np.log10(np.power(10, levels / 10).sum(1))
    return np.maximum(total, total.max() - FLOOR_DB)


def spectral_change(levels: np.ndarray) -> np.ndarray:
    """(F,) distance (dB) between the band levels of the frames either side of each frame, halved."""
    return np.linalg.norm(np.gradient(levels, axis=0), axis=1)
