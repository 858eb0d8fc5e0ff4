"""A weight-free log-mel front end with a small trainable conv head: fast on a CPU, no download."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from emo_lightning.components.base import AudioEncoder
from emo_lightning.components.windows import features_at_frames, sliding_window
from emo_lightning.registry import register


def mel_filterbank(num_mels: int, n_fft: int, sample_rate: int) -> Tensor:
    """Triangular HTK-mel filters, ``(n_fft//2 + 1, num_mels)``."""

    def hz_to_mel(hz: Tensor) -> Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: Tensor) -> Tensor:
        return 700.0 * (10 ** (mel / 2595.0) - 1.0)

    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(torch.linspace(0, float(hz_to_mel(torch.tensor(sample_rate / 2.0))), num_mels + 2))
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (center - lower)
    falling = (upper - freqs[:, None]) / (upper - center)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


@register("audio_encoder", "mel", tiny={"num_mels": 20, "hidden_dim": 16})
class MelAudioEncoder(AudioEncoder):
    """Log-mel spectrogram (25 ms windows, 10 ms hop) → 1-D convs → LayerNorm → frame-rate tokens.

    The LayerNorm gives the tokens unit scale, as wav2vec2's head does: unnormalised they come out small, and the
    audio-attention they feed barely moves the backbone's output.
    """

    def __init__(self, output_dim: int = 32, window: int = 2, num_mels: int = 40, hidden_dim: int = 64,
                 sample_rate: int = 16000):
        super().__init__()
        self.output_dim, self.window, self.sample_rate = output_dim, window, sample_rate
        self.n_fft = 2 ** math.ceil(math.log2(0.025 * sample_rate))
        self.hop = int(0.010 * sample_rate)
        self.feature_rate = sample_rate / self.hop
        self.register_buffer("filters", mel_filterbank(num_mels, self.n_fft, sample_rate), persistent=False)
        self.register_buffer("stft_window", torch.hann_window(self.n_fft), persistent=False)
        self.head = nn.Sequential(
            nn.Conv1d(num_mels, hidden_dim, 3, padding=1), nn.SiLU(),
            nn.Conv1d(hidden_dim, output_dim, 3, padding=1),
        )
        self.norm = nn.LayerNorm(output_dim)

    def log_mel(self, waveform: Tensor) -> Tensor:
        """``(B, S) -> (B, num_mels, T)``."""
        spec = torch.stft(waveform.float(), self.n_fft, self.hop, window=self.stft_window, center=True,
                          return_complex=True).abs() ** 2
        return torch.log(spec.transpose(1, 2) @ self.filters + 1e-6).transpose(1, 2)

    def forward(self, waveform: Tensor, num_frames: int) -> Tensor:
        mel = self.log_mel(waveform).to(self.head[0].weight.dtype)
        tokens = self.norm(self.head(mel).transpose(1, 2))  # (B, T, D)
        frames = features_at_frames(tokens, num_frames, waveform.shape[-1], self.sample_rate, self.feature_rate)
        return sliding_window(frames, self.window)
