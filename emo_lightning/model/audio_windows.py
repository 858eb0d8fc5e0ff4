"""Audio tokens for a long waveform, encoded in overlapping windows so that memory stays bounded.

One pass of an audio encoder over a whole waveform grows with its length: wav2vec2-base takes +85 MB for
5 s of audio, +322 MB for 20 s and +947 MB for 60 s (measured on a CPU), and a song of several minutes
would take gigabytes. Audio longer than ``window_s + 2·context_s`` is cut into windows of ``window_s``,
each encoded with ``context_s`` of audio on both sides that is then dropped, so every kept frame sees at
least ``context_s`` of its neighbourhood. Shorter audio is encoded in one pass, exactly as before. The
default 10 s + 2 × 2 s keeps each pass within wav2vec2's pre-training crops (15.6 s).
"""

from __future__ import annotations

import torch
from torch import Tensor

from emo_lightning.components.base import AudioEncoder


def encode_audio(encoder: AudioEncoder, waveform: Tensor, num_frames: int, window_s: float = 10.0,
                 context_s: float = 2.0, features: bool = False) -> Tensor:
    """``encoder(waveform, num_frames)``, ``(B, S) -> (B, F, 2m+1, D)``, in windows of ``window_s`` seconds;
    with ``features``, the encoder's frozen part ``encoder.features(waveform, num_frames)`` ``-> (B, F, D)``.

    Frame f covers samples [f·S/F, (f+1)·S/F) in every window, as the :class:`AudioEncoder` interface states.
    """
    encode = encoder.features if features else encoder
    samples_per_frame = waveform.shape[-1] / num_frames
    frames_per_second = encoder.sample_rate / samples_per_frame
    window = max(1, round(window_s * frames_per_second))
    context = round(context_s * frames_per_second)
    if num_frames <= window + 2 * context:
        return encode(waveform, num_frames)
    pieces = []
    for start in range(0, num_frames, window):
        stop = min(start + window, num_frames)
        lo, hi = max(0, start - context), min(num_frames, stop + context)
        chunk = waveform[:, round(lo * samples_per_frame):round(hi * samples_per_frame)]
        pieces.append(encode(chunk, hi - lo)[:, start - lo:stop - lo])
    return torch.cat(pieces, dim=1)
