"""Lip sync from facial landmarks, with no sync network: the audio–video offset at which the lips' motion follows the
speech best, and how clearly the clip shows it.

Per-frame signals (:mod:`~emo_lightning.evaluation.sync_signals`, at the video's frame rate) are compared in six
pairs (:func:`signal_pairs`): lip motion and opening speed against loudness (the lips move while someone speaks) and
against spectral change (they move fastest where the sound changes fastest), and the rates of change of both against
that of loudness (onsets against onsets, which sharpens the peak). None is band-passed: a syllable-rate band-pass
makes the signals nearly periodic, and the correlation then peaks as high one syllable away as at the true offset.
Mouth opening itself is not compared: people open their mouths to breathe in silence and close them on loud
bilabial onsets.

For every offset in ±``max_offset`` frames the Pearson correlation of ``lips[t]`` with ``audio[t + offset]`` is
computed over the whole clip (3-frame moving averages first), and the pairs' curves are averaged. Chance level comes
from the same clip: the averaged correlation at every circular shift of the audio by at least
``max(max_offset + 1, 20 %)`` of the clip, where lips and sound are unrelated but the signals keep their own rhythm.
The confidence is the peak's distance from the chance mean in chance standard deviations. The offset is ``None``
(undetermined) when the curve's maximum lies at the edge of the search (the true peak may lie outside it), when the
confidence is below ``min_confidence`` (a flat curve), or when another local maximum more than 2 frames away
reaches ``ambiguity`` (60 %) of the peak's height above chance (two candidate offsets). Positive offsets: the sound
comes after the lips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emo_lightning.evaluation.sync_signals import (
    band_levels,
    lip_motion,
    loudness,
    opening_speed,
    spectral_change,
)

SMOOTH_FRAMES = 3  # the landmark track jitters from frame to frame; both signals get the same moving average


@dataclass
class SyncResult:
    """``offset``: frames of the video, positive when the sound comes after the lips, ``None`` when undetermined
    (``reason`` says why); ``correlation``: the averaged curve at its peak; ``confidence``: the peak's height above
    chance in standard deviations of chance; ``curve``: the averaged correlation per offset, −max_offset first."""

    offset: int | None
    correlation: float
    confidence: float
    reason: str
    curve: list[float]


def smooth(values: np.ndarray, width: int = SMOOTH_FRAMES) -> np.ndarray:
    """Centred moving average over ``width`` frames (edges held)."""
    padded = np.pad(values, (width // 2, width - 1 - width // 2), mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def lagged_correlation(lips: np.ndarray, audio: np.ndarray, max_offset: int) -> np.ndarray:
    """Pearson correlation of ``lips[t]`` with ``audio[t + offset]`` over their overlap, offset = −max … max."""
    curve = np.zeros(2 * max_offset + 1)
    for i, offset in enumerate(range(-max_offset, max_offset + 1)):
        a = lips[max(0, -offset) : len(lips) - max(0, offset)]
        b = audio[max(0, offset) : len(audio) - max(0, -offset)]
        a, b = a - a.mean(), b - b.mean()
        denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
        curve[i] = float((a * b).sum()) / denominator if denominator > 0 else 0.0
    return curve


def circular_correlations(lips: np.ndarray, audio: np.ndarray, min_shift: int) -> np.ndarray:
    """Pearson correlation of ``lips`` with ``audio`` circularly shifted by every shift in ``min_shift …
    len − min_shift`` (by FFT, so long videos cost little)."""
    a = (lips - lips.mean()) / (lips.std() or 1.0)
    b = (audio - audio.mean()) / (audio.std() or 1.0)
    circular = np.fft.irfft(np.conj(np.fft.rfft(a)) * np.fft.rfft(b), len(a)) / len(a)
    return circular[min_shift : len(a) - min_shift + 1]


def find_offset(curve: np.ndarray, chance: np.ndarray, min_confidence: float = 3.0,
                ambiguity: float = 0.6) -> SyncResult:
    """The offset at the curve's peak, or ``None`` with the reason (see the module's docstring)."""
    max_offset = (len(curve) - 1) // 2
    peak = int(curve.argmax())
    spread = float(chance.std()) or 1e-12
    confidence = float((curve[peak] - chance.mean()) / spread)
    values = {"correlation": float(curve[peak]), "confidence": confidence, "curve": [float(c) for c in curve]}
    if peak in (0, len(curve) - 1):
        return SyncResult(None, reason=f"the correlation is highest at the edge of the ±{max_offset}-frame search",
                          **values)
    if confidence < min_confidence:
        return SyncResult(None, reason=f"no clear peak (confidence {confidence:.1f} < {min_confidence})", **values)
    height = curve - chance.mean()
    local = [i for i in range(1, len(curve) - 1) if curve[i] >= curve[i - 1] and curve[i] >= curve[i + 1]]
    rivals = [i for i in local if abs(i - peak) > 2 and height[i] >= ambiguity * height[peak]]
    if rivals:
        return SyncResult(None, reason=f"two candidate offsets ({peak - max_offset:+d} and "
                                       f"{rivals[0] - max_offset:+d}) of similar height", **values)
    return SyncResult(peak - max_offset, reason="", **values)


def signal_pairs(lip_signals: list[np.ndarray], levels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (lips, audio) pairs compared: lip motion and opening speed each against loudness and spectral change, and
    the rates of change of lip motion and of opening speed against that of loudness (sharper peaks: onsets)."""
    motion, opening = (smooth(x) for x in lip_signals)
    loud, change = smooth(loudness(levels)), smooth(spectral_change(levels))

    def rate(x: np.ndarray) -> np.ndarray:
        return smooth(np.gradient(x))

    return [(motion, loud), (motion, change), (opening, loud), (opening, change),
            (rate(motion), rate(loud)), (rate(opening), rate(loud))]


def sync_curves(lip_signals: list[np.ndarray], waveform: np.ndarray, sample_rate: int, fps: float,
                max_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(averaged lagged correlation, averaged chance correlations) over :func:`signal_pairs`."""
    frames = len(lip_signals[0])
    min_shift = max(max_offset + 1, round(0.2 * frames))
    if frames < 2 * min_shift + 10:
        raise ValueError(f"{frames} frames are too few for an offset search over ±{max_offset} frames with a chance "
                         f"level (at least {2 * max_offset + 12})")
    pairs = signal_pairs(lip_signals, band_levels(waveform, sample_rate, frames, fps))
    curves = [lagged_correlation(lips, audio, max_offset) for lips, audio in pairs]
    chances = [circular_correlations(lips, audio, min_shift) for lips, audio in pairs]
    return np.mean(curves, 0), np.mean(chances, 0)


def landmark_sync(points: np.ndarray, regions: dict[str, np.ndarray], waveform: np.ndarray, sample_rate: int,
                  fps: float, max_offset: int = 15, min_confidence: float = 3.0) -> SyncResult:
    """Landmark sync of one video from its landmarks ``(F, P, 2)`` (all-NaN rows where no face was found) and its
    mono audio, sample 0 at the first frame."""
    points = np.asarray(points, np.float64)
    found = np.isfinite(points[:, 0, 0])
    if found.sum() < max(3, 0.5 * len(points)):
        raise ValueError(f"a face was found in only {found.sum()} of {len(points)} frames")
    lip_signals = [lip_motion(points, regions), opening_speed(points, regions)]
    curve, chance = sync_curves(lip_signals, waveform, sample_rate, fps, max_offset)
    return find_offset(curve, chance, min_confidence)
