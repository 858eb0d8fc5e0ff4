"""Audio tokens for a long waveform, encoded in overlapping windows so that memory stays bounded.

One pass of an audio encoder over the whole waveform grows with its length (wav2vec2's convolutions
linearly, its attention quadratically: a minute of audio takes ~1 GB in wav2vec2-base). Long audio is cut
into windows of ``window`` frames, each encoded with ``context`` frames of audio on both sides that are
then dropped, so every kept frame sees the same neighbourhood as in a single pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from emo_lightning.components.base import AudioEncoder


def encode_audio(encoder: AudioEncoder, waveform: Tensor, num_frames: int, window: int = 200,
                 context: int = 25) -> Tensor:
    """``encoder(waveform, num_frames)`` — ``(B, S) -> (B, F, 2m+1, D)`` — in windows of ``window`` frames.

    Audio up to ``window + 2·context`` frames long is encoded in one pass. Frame f covers samples
    [f·S/F, (f+1)·S/F), as the :class:`AudioEncoder` interface states, in every window.
    """
    if num_frames <= window + 2 * context:
        return encoder(waveform, num_frames)
    samples_per_frame = waveform.shape[-1] / num_frames
    pieces = []
    for start in range(0, num_frames, window):
        stop = min(start + window, num_frames)
        lo, hi = max(0, start - context), min(num_frames, stop + context)
        chunk = waveform[:, round(lo * samples_per_frame):round(hi * samples_per_frame)]
        pieces.append(encoder(chunk, hi - lo)[:, start - lo:stop - lo])
    return torch.cat(pieces, dim=1)
