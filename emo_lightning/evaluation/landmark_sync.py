"""Lip sync from facial landmarks, with no sync network: the audio–video offset at which the mouth's motion follows
the speech best, and how clearly the clip shows it.

Per-frame signals (:mod:`~emo_lightning.evaluation.sync_signals`, at the video's frame rate) are compared in pairs.
With the video's frames (:func:`pixel_pairs`, what ``emo evaluate`` uses): the change of the mouth's picture in a
patch that the landmarks hold still, against loudness (the mouth moves while someone speaks) and against spectral
change (it moves most where the sound changes most), and its rate of change against that of loudness (onsets against
onsets, which sharpens the peak). The picture follows articulation (lips, teeth, tongue) with less frame-to-frame
noise than landmark positions: on the six shared real clips it resolves 4 offsets where the landmarks resolve 2,
with fewer chance readings on other clips' audio (docs/results/landmark_sync.md). Without frames
(:func:`landmark_pairs`): the same with lip motion and opening speed from the landmarks. None is band-passed: a
syllable-rate band-pass makes the signals nearly periodic, and the correlation then peaks as high one syllable away
as at the true offset. Mouth opening itself is not compared: people open their mouths to breathe in silence and close
them on loud bilabial onsets.

For every offset in ±``max_offset`` frames the Pearson correlation of ``mouth[t]`` with ``audio[t + offset]`` is
computed over the whole clip (3-frame moving averages first), and the pairs' curves are averaged. Chance level comes
from the same clip: the averaged correlation at every circular shift of the audio by at least
``max(max_offset + 1, 20 %)`` of the clip, where mouth and sound are unrelated but the signals keep their own rhythm.
The confidence is the peak's distance from the chance mean in chance standard deviations. The offset is ``None``
(undetermined) when the curve's maximum lies at the edge of the search (the true peak may lie outside it), when the
confidence is below ``min_confidence`` (a flat curve), or when another local maximum more than 2 frames away
reaches ``ambiguity`` (60 %) of the peak's height above chance (two candidate offsets). Positive offsets: the sound
comes after the mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emo_lightning.evaluation.sync_signals import (
    band_levels,
    lip_motion,
    loudness,
    mouth_change,
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


Pairs = list[tuple[np.ndarray, np.ndarray]]


def rate(values: np.ndarray) -> np.ndarray:
    """Smoothed rate of change per frame (central differences)."""
    return smooth(np.gradient(values))


def pixel_pairs(change: np.ndarray, levels: np.ndarray) -> Pairs:
    """The (mouth, audio) pairs compared with the frames: mouth change against loudness and spectral change, and the
    rate of change of mouth change against that of loudness."""
    change, loud, spectral = smooth(change), smooth(loudness(levels)), smooth(spectral_change(levels))
    return [(change, loud), (change, spectral), (rate(change), rate(loud))]


def landmark_pairs(lip_signals: list[np.ndarray], levels: np.ndarray) -> Pairs:
    """The (lips, audio) pairs compared without frames: lip motion and opening speed each against loudness and
    spectral change, and the rates of change of lip motion and of opening speed against that of loudness."""
    motion, opening = (smooth(x) for x in lip_signals)
    loud, spectral = smooth(loudness(levels)), smooth(spectral_change(levels))
    return [(motion, loud), (motion, spectral), (opening, loud), (opening, spectral),
            (rate(motion), rate(loud)), (rate(opening), rate(loud))]


def sync_curves(pairs: Pairs, max_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(averaged lagged correlation, averaged chance correlations) over the pairs."""
    frames = len(pairs[0][0])
    min_shift = max(max_offset + 1, round(0.2 * frames))
    if frames < 2 * min_shift + 10:
        raise ValueError(f"{frames} frames are too few for an offset search over ±{max_offset} frames with a chance "
                         f"level (at least {2 * max_offset + 12})")
    curves = [lagged_correlation(mouth, audio, max_offset) for mouth, audio in pairs]
    chances = [circular_correlations(mouth, audio, min_shift) for mouth, audio in pairs]
    return np.mean(curves, 0), np.mean(chances, 0)


def landmark_sync(points: np.ndarray, regions: dict[str, np.ndarray], waveform: np.ndarray, sample_rate: int,
                  fps: float, max_offset: int = 15, min_confidence: float = 3.0,
                  frames: np.ndarray | None = None) -> SyncResult:
    """Lip sync of one video from its landmarks ``(F, P, 2)`` (all-NaN rows where no face was found), its mono audio
    (sample 0 at the first frame) and, where given, its RGB uint8 frames ``(F, H, W, 3)`` (then the mouth's picture
    is compared, see the module's docstring; without them the landmarks' lip motion)."""
    points = np.asarray(points, np.float64)
    found = np.isfinite(points[:, 0, 0])
    if found.sum() < max(3, 0.5 * len(points)):
        raise ValueError(f"a face was found in only {found.sum()} of {len(points)} frames")
    levels = band_levels(waveform, sample_rate, len(points), fps)
    if frames is not None:
        pairs = pixel_pairs(mouth_change(frames, points, regions), levels)
    else:
        pairs = landmark_pairs([lip_motion(points, regions), opening_speed(points, regions)], levels)
    curve, chance = sync_curves(pairs, max_offset)
    return find_offset(curve, chance, min_confidence)
