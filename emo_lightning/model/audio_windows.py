"""Audio tokens for a long waveform, encoded in overlapping windows so that memory stays bounded.

One pass of an audio encoder over a whole waveform grows with its length: wav2vec2-base takes +85 MB for
5 s of audio, +322 MB for 20 s and +947 MB for 60 s (measured on a CPU), and a song of several minutes
would take gigabytes. Audio longer than ``window_s + 2·context_s`` is cut into windows of ``window_s``,
each encoded with ``context_s`` of audio on both sides that is then dropped, so every kept frame sees at
least ``context_s`` of its neighbourhood. Shorter audio is encoded in one pass, exactly as before. The
default 10 s + 2 × 2 s keeps each pass within wav2vec2's pre-training crops (15.6 s).

Cuts fall on the encoder's own feature grid (``feature_rate``) where the frame rate allows it, so an encoder that
looks only at nearby audio gives the tokens of one pass. An encoder with fixed windows of its own
(``window_seconds``: Whisper) is encoded one of those windows at a time, as one pass does too; its ``head`` then
sees the neighbouring windows' nearest features, so the tokens at window edges are those of one pass.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

from emo_lightning.components.base import AudioEncoder


def _aligned_step(frames_per_feature_grid: float, limit: int = 1000) -> int:
    """The smallest number of frames k ≥ 1 that spans a whole number of encoder features (1 where none ≤ limit)."""
    ratio = Fraction(frames_per_feature_grid).limit_denominator(limit)
    return ratio.denominator if abs(float(ratio) - frames_per_feature_grid) < 1e-9 else 1


def _encode_pieces(encoder: AudioEncoder, waveform: Tensor, samples_per_frame: float,
                   spans: list[tuple[int, int, int, int]]) -> Tensor:
    """Encode ``(lo, hi)`` frames of audio per span, keep its ``[start, stop)`` frames, concatenate."""
    pieces = []
    for lo, hi, start, stop in spans:
        chunk = waveform[:, round(lo * samples_per_frame):round(hi * samples_per_frame)]
        pieces.append(encoder(chunk, hi - lo)[:, start - lo:stop - lo])
    return torch.cat(pieces, dim=1)


def _fixed_window_tokens(encoder: AudioEncoder, waveform: Tensor, num_frames: int, per_window: int) -> Tensor:
    """Tokens of an encoder with windows of its own (``per_window`` frames each), one window at a time: its
    ``features`` of each window, with those of the neighbouring windows' nearest frames as the head's context."""
    samples_per_frame = waveform.shape[-1] / num_frames
    features_per_frame = samples_per_frame * encoder.feature_rate / encoder.sample_rate
    step = _aligned_step(features_per_frame)
    context = math.ceil(encoder.window / step) * step + step  # frames; + step: the interpolation's neighbour
    context_features = round(context * features_per_frame)
    bounds = [(s, min(s + per_window, num_frames)) for s in range(0, num_frames, per_window)]

    def features(i: int) -> Tensor | None:
        if not 0 <= i < len(bounds):
            return None
        lo, hi = bounds[i]
        return encoder.features(waveform[:, round(lo * samples_per_frame):round(hi * samples_per_frame)])

    pieces, previous, current = [], None, features(0)
    for i, (start, stop) in enumerate(bounds):
        following = features(i + 1)
        parts, lo, hi = [current], start, stop
        if previous is not None:
            parts.insert(0, previous[:, -context_features:])
            lo -= context
        if following is not None:
            parts.append(following[:, :context_features])
            hi = min(num_frames, hi + context)
        tokens = encoder.head(torch.cat(parts, dim=1), hi - lo,
                              round(hi * samples_per_frame) - round(lo * samples_per_frame))
        pieces.append(tokens[:, start - lo:stop - lo])
        previous, current = current, following
    return torch.cat(pieces, dim=1)


def encode_audio(encoder: AudioEncoder, waveform: Tensor, num_frames: int, window_s: float = 10.0,
                 context_s: float = 2.0) -> Tensor:
    """``encoder(waveform, num_frames)``, ``(B, S) -> (B, F, 2m+1, D)``, in windows of ``window_s`` seconds.

    Frame f covers samples [f·S/F, (f+1)·S/F) in every window, as the :class:`AudioEncoder` interface states.
    """
    samples_per_frame = waveform.shape[-1] / num_frames
    frames_per_second = encoder.sample_rate / samples_per_frame
    if encoder.window_seconds:
        per_window = encoder.window_seconds * frames_per_second
        if abs(per_window - round(per_window)) > 1e-6 or num_frames <= round(per_window):
            return encoder(waveform, num_frames)  # it windows itself; frames straddle its windows
        return _fixed_window_tokens(encoder, waveform, num_frames, round(per_window))
    step = _aligned_step(samples_per_frame * encoder.feature_rate / encoder.sample_rate) if encoder.feature_rate else 1
    window = math.ceil(max(1, round(window_s * frames_per_second)) / step) * step
    context = round(context_s * frames_per_second)
    if num_frames <= window + 2 * context:
        return encoder(waveform, num_frames)
    spans = []
    for start in range(0, num_frames, window):
        stop = min(start + window, num_frames)
        lo = max(0, start - context) // step * step
        hi = min(num_frames, math.ceil((stop + context) / step) * step)
        spans.append((lo, hi, start, stop))
    return _encode_pieces(encoder, waveform, samples_per_frame, spans)
