"""Lip sync from facial landmarks, with no sync network: how well the mouth opening follows the audio, and the
audio–video offset at which it follows best.

Signals (one value per video frame):

* mouth: the inner-lip area over the squared eye distance
  (:func:`~emo_lightning.evaluation.face_geometry.mouth_opening`);
* audio: the log energies of 16 log-spaced bands (80 Hz–8 kHz) per frame, reduced to their first principal component
  after band-passing (the spectral pattern that varies most at syllable rate), signed to follow the loudness.

Both are band-passed to syllable rate (a difference of two moving averages, ``fast`` and ``slow`` frames wide,
≈ 2–8 Hz at 25 fps), which removes slow trends (head motion, loudness drift) that otherwise make the correlation
peak broad and wander. The Pearson correlation is computed at each offset in ±``max_offset`` frames within windows
of ``window_seconds`` (every ``hop_seconds``), and the windows' curves are averaged (a consensus that one odd window
cannot move far). Reported: the offset of the averaged curve's peak (positive: the sound comes after the mouth),
the correlation there, a confidence (peak minus the curve's median, as SyncNet's), and the share of windows whose
own peak lies within one frame of it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import stft

BANDS = np.geomspace(80, 8000, 17)  # edges of 16 bands


def band_energies(waveform: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> np.ndarray:
    """(num_frames, 16) log energies per video frame (frame f ↔ samples from f·rate/fps), 10 ms STFT steps pooled."""
    hop = round(sample_rate * 0.01)
    window = round(sample_rate * 0.025)
    needed = math.ceil(num_frames * sample_rate / fps) + window
    wave = np.zeros(needed)
    wave[: min(len(waveform), needed)] = waveform[:needed]
    freqs, _, spectrum = stft(wave, sample_rate, nperseg=window, noverlap=window - hop, boundary=None, padded=False)
    power = np.abs(spectrum) ** 2
    bands = np.stack([power[(freqs >= lo) & (freqs < hi)].sum(0) for lo, hi in zip(BANDS[:-1], BANDS[1:],
                                                                                      strict=True)], 1)
    step_of_frame = np.floor(np.arange(num_frames + 1) * sample_rate / fps / hop).astype(int)
    step_of_frame = np.minimum(step_of_frame, len(bands) - 1)
    pooled = np.stack([bands[a : max(b, a + 1)].mean(0) for a, b in zip(step_of_frame[:-1], step_of_frame[1:],
                                                                         strict=True)])
    return np.log(pooled + 1e-10)


def bandpass(x: np.ndarray, fast: int = 3, slow: int = 13) -> np.ndarray:
    """Moving average over ``fast`` frames minus moving average over ``slow`` frames, along axis 0."""
    def smooth(values: np.ndarray, width: int) -> np.ndarray:
        padded = np.pad(values, [(width // 2, width - 1 - width // 2)] + [(0, 0)] * (values.ndim - 1), mode="edge")
        cumulative = np.cumsum(np.concatenate([np.zeros_like(padded[:1]), padded]), axis=0)
        return (cumulative[width:] - cumulative[:-width]) / width

    return smooth(x, fast) - smooth(x, slow)


def audio_activity(bands: np.ndarray, fast: int = 3, slow: int = 13) -> np.ndarray:
    """The first principal component of the band-passed band energies, signed to rise with loudness."""
    filtered = bandpass(bands, fast, slow)
    filtered = filtered - filtered.mean(0)
    u, s, _ = np.linalg.svd(filtered, full_matrices=False)
    component = u[:, 0] * s[0]
    loudness = bandpass(np.log(np.exp(bands).sum(1)), fast, slow)
    return component if np.dot(component, loudness - loudness.mean()) >= 0 else -component


def lagged_correlation(mouth: np.ndarray, audio: np.ndarray, max_offset: int) -> np.ndarray:
    """Pearson correlation of ``mouth[t]`` with ``audio[t + offset]`` for offset = -max_offset … max_offset."""
    curve = np.zeros(2 * max_offset + 1)
    for i, offset in enumerate(range(-max_offset, max_offset + 1)):
        a = mouth[max(0, -offset) : len(mouth) - max(0, offset)]
        b = audio[max(0, offset) : len(audio) - max(0, -offset)]
        a, b = a - a.mean(), b - b.mean()
        denominator = math.sqrt(float((a * a).sum() * (b * b).sum()))
        curve[i] = float((a * b).sum()) / denominator if denominator > 0 else 0.0
    return curve


def sync_offset(mouth: np.ndarray, audio: np.ndarray, fps: float, max_offset: int = 15,
                window_seconds: float = 4.0, hop_seconds: float = 1.0) -> dict[str, float]:
    """Offset search on per-frame mouth and audio signals (already band-passed), by per-window consensus."""
    frames = len(mouth)
    window = min(frames, round(window_seconds * fps))
    if window < 2 * max_offset + 4:
        raise ValueError(f"{frames} frames are too few for an offset search over ±{max_offset} frames "
                         f"(at least {2 * max_offset + 4})")
    hop = max(1, round(hop_seconds * fps))
    starts = list(range(0, frames - window + 1, hop))
    curves = np.stack([lagged_correlation(mouth[s : s + window], audio[s : s + window], max_offset) for s in starts])
    curve = curves.mean(0)
    peak = int(curve.argmax())
    agreement = float(np.mean(np.abs(curves.argmax(1) - peak) <= 1))
    return {"offset": float(peak - max_offset), "correlation": float(curve[peak]),
            "confidence": float(curve[peak] - np.median(curve)), "window_agreement": agreement}


def landmark_sync(opening: np.ndarray, waveform: np.ndarray, sample_rate: int, fps: float, max_offset: int = 15,
                  fast: int = 3, slow: int = 13) -> dict[str, float]:
    """Landmark sync of one video from its mouth opening per frame (NaN where no face: filled from neighbours)."""
    opening = np.asarray(opening, float)
    found = np.isfinite(opening)
    if found.sum() < max(2, 0.5 * len(opening)):
        raise ValueError(f"a face was found in only {found.sum()} of {len(opening)} frames")
    opening = np.interp(np.arange(len(opening)), np.flatnonzero(found), opening[found])
    bands = band_energies(waveform, sample_rate, len(opening), fps)
    return sync_offset(bandpass(opening, fast, slow), audio_activity(bands, fast, slow), fps, max_offset)
