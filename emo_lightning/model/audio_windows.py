"""Audio tokens for a long waveform, encoded in overlapping windows so that memory stays bounded.

One pass of an audio encoder over a whole waveform grows with its length (wav2vec2-base: docs/guides/architecture.md),
so a song of several minutes would take gigabytes. Audio longer than ``window_s + 2·context_s`` is cut into windows
of ``window_s``, each encoded with ``context_s`` of audio on both sides that is then dropped, so every kept frame
sees at least ``context_s`` of its neighbourhood. Shorter audio is encoded in one pass. The default 10 s + 2 × 2 s
keeps each pass within wav2vec2's pre-training crops (15.6 s).

Cuts fall on the encoder's own feature grid (``feature_rate``) where the frame rate allows it, so an encoder that
looks only at nearby audio gives the tokens of one pass. An encoder with fixed windows of its own
(``window_seconds``: Whisper) is encoded one of those windows at a time, as one pass does too; its trainable
``tokens`` part then sees the neighbouring windows' nearest frames, so the tokens at window edges are those of one
pass.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

from emo_lightning.components.base import AudioEncoder


def _aligned_step(frames_per_feature: float, limit: int = 1000) -> int:
    """The smallest number of frames k ≥ 1 that spans a whole number of encoder features (1 where none ≤ limit)."""
    ratio = Fraction(frames_per_feature).limit_denominator(limit)
    return ratio.denominator if abs(float(ratio) - frames_per_feature) < 1e-9 else 1


def _fixed_windows(encoder: AudioEncoder, waveform: Tensor, num_frames: int, per_window: int,
                   features: bool) -> Tensor:
    """An encoder with windows of its own (``per_window`` frames each), one window at a time: the ``features`` of
    each window; for tokens, ``tokens`` of each window's features with its neighbours' nearest ±window frames."""
    samples_per_frame = waveform.shape[-1] / num_frames
    bounds = [(s, min(s + per_window, num_frames)) for s in range(0, num_frames, per_window)]

    def window_features(i: int) -> Tensor | None:
        if i >= len(bounds):
            return None
        lo, hi = bounds[i]
        return encoder.features(waveform[:, round(lo * samples_per_frame):round(hi * samples_per_frame)], hi - lo)

    if features:
        return torch.cat([window_features(i) for i in range(len(bounds))], dim=1)
    m = encoder.window
    pieces, previous, current = [], None, window_features(0)
    for i in range(len(bounds)):
        following = window_features(i + 1)
        before = previous[:, previous.shape[1] - m:] if previous is not None and m else current[:, :0]
        after = following[:, :m] if following is not None and m else current[:, :0]
        tokens = encoder.tokens(torch.cat([before, current, after], dim=1))
        pieces.append(tokens[:, before.shape[1]:before.shape[1] + current.shape[1]])
        previous, current = current, following
    return torch.cat(pieces, dim=1)


def encode_audio(encoder: AudioEncoder, waveform: Tensor, num_frames: int, window_s: float = 10.0,
                 context_s: float = 2.0, features: bool = False) -> Tensor:
    """``encoder(waveform, num_frames)``, ``(B, S) -> (B, F, 2m+1, D)``, in windows of ``window_s`` seconds;
    with ``features``, the encoder's frozen part ``encoder.features(waveform, num_frames)`` ``-> (B, F, D)``.

    Frame f covers samples [f·S/F, (f+1)·S/F) in every window, as the :class:`AudioEncoder` interface states.
    """
    encode = encoder.features if features else encoder
    samples_per_frame = waveform.shape[-1] / num_frames
    frames_per_second = encoder.sample_rate / samples_per_frame
    if encoder.window_seconds:
        per_window = encoder.window_seconds * frames_per_second
        if abs(per_window - round(per_window)) > 1e-6 or num_frames <= round(per_window):
            return encode(waveform, num_frames)  # it windows itself; here frames straddle its windows
        return _fixed_windows(encoder, waveform, num_frames, round(per_window), features)
    step = _aligned_step(samples_per_frame * encoder.feature_rate / encoder.sample_rate) if encoder.feature_rate else 1
    window = math.ceil(max(1, round(window_s * frames_per_second)) / step) * step
    context = round(context_s * frames_per_second)
    if num_frames <= window + 2 * context:
        return encode(waveform, num_frames)
    pieces = []
    for start in range(0, num_frames, window):
        stop = min(start + window, num_frames)
        lo = max(0, start - context) // step * step  # cuts on the encoder's feature grid
        hi = min(num_frames, math.ceil((stop + context) / step) * step)
        chunk = waveform[:, round(lo * samples_per_frame):round(hi * samples_per_frame)]
        pieces.append(encode(chunk, hi - lo)[:, start - lo:stop - lo])
    return torch.cat(pieces, dim=1)
