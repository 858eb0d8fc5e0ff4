"""Long audio is encoded in overlapping windows: the same tokens as one pass where the encoder is local,
one pass unchanged for audio up to the window, and bounded work per window."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from emo_lightning import registry
from emo_lightning.components.base import AudioEncoder
from emo_lightning.components.windows import sliding_window
from emo_lightning.model.audio_windows import encode_audio


class LoudnessEncoder(AudioEncoder):
    """A strictly local encoder: each frame's log-energy over its own samples, smoothed over ±2 frames."""

    def __init__(self):
        super().__init__()
        self.output_dim, self.window = 4, 2
        self.proj = nn.Conv1d(1, 4, 5, padding=2)  # mixes ±2 frames: the context windows must cover it
        self.calls: list[int] = []

    def forward(self, waveform: Tensor, num_frames: int) -> Tensor:
        self.calls.append(waveform.shape[-1])
        energy = waveform.reshape(waveform.shape[0], num_frames, -1).pow(2).mean(-1).add(1e-6).log()
        return sliding_window(self.proj(energy[:, None]).transpose(1, 2), self.window)


def test_windows_give_one_pass_tokens_for_a_local_encoder():
    torch.manual_seed(0)
    encoder = LoudnessEncoder()
    frames = 1510  # 60.4 s at 25 fps; windows of 20 s + 2 s of context on each side
    waveform = torch.randn(2, frames * 640) * torch.rand(2, frames, 1).repeat_interleave(640, 2).reshape(2, -1)
    with torch.no_grad():
        whole = encoder(waveform, frames)
        encoder.calls.clear()
        windowed = encode_audio(encoder, waveform, frames, window_s=20.0, context_s=2.0)
    assert windowed.shape == whole.shape == (2, frames, 5, 4)
    torch.testing.assert_close(windowed, whole, rtol=1e-5, atol=1e-5)
    assert len(encoder.calls) == 4 and max(encoder.calls) == 24 * 16000  # never more than a window + context


def test_audio_up_to_the_window_is_encoded_in_one_pass_as_before():
    entry = registry.entry("audio_encoder", "wav2vec2")
    encoder = registry.build("audio_encoder", "wav2vec2", output_dim=32, **entry.tiny_config()).eval()
    waveform = torch.randn(1, 16000 * 3) * 0.1
    with torch.no_grad():
        assert torch.equal(encode_audio(encoder, waveform, 75, window_s=3.0, context_s=0.5), encoder(waveform, 75))
        windowed = encode_audio(encoder, waveform, 75, window_s=1.0, context_s=0.5)
    assert windowed.shape == (1, 75, 5, 32) and torch.isfinite(windowed).all()
