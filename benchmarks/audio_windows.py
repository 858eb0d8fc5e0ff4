"""Windowed vs one-pass encoding of 40 s of audio for every registered audio encoder (tiny configs), at 25 and
30 fps: the largest token difference, next to the tokens' mean magnitude.

    python benchmarks/audio_windows.py
"""

from __future__ import annotations

import torch

from emo_lightning import registry
from emo_lightning.model.audio_windows import encode_audio


def main() -> None:
    print(f"{'encoder':<10} {'fps':>4} {'max |windowed - one pass|':>26} {'mean |token|':>13}")
    for entry in registry.entries("audio_encoder"):
        torch.manual_seed(0)
        encoder = registry.build("audio_encoder", entry.name, **entry.tiny_config(), output_dim=16).eval()
        torch.manual_seed(1)
        waveform = torch.randn(1, 40 * encoder.sample_rate) * 0.1
        for fps in (25, 30):
            with torch.no_grad():
                whole = encoder(waveform, 40 * fps)
                windowed = encode_audio(encoder, waveform, 40 * fps)
            deviation = (windowed - whole).abs().max().item()
            print(f"{entry.name:<10} {fps:>4} {deviation:>26.2e} {whole.abs().mean().item():>13.2f}")


if __name__ == "__main__":
    main()
