"""Hallo's parts against the golden tensors Hallo's own code computed (``EMO_HALLO_GOLDEN``, default
``../shared/golden/hallo_tiny``; its README says what each tensor is). Sizes are read from the folder, so any folder
written the same way (another seed, resolution, frame count, widths) must pass too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from emo_lightning import registry

GOLDEN = Path(os.environ.get("EMO_HALLO_GOLDEN", Path(__file__).parents[1] / ".." / "shared" / "golden" / "hallo_tiny"))
pytestmark = pytest.mark.skipif(not (GOLDEN / "expected.safetensors").is_file(),
                                reason=f"no Hallo golden folder at {GOLDEN} (set EMO_HALLO_GOLDEN)")


def assert_matches(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    """Equal to within 1e-4 of the expected tensor's scale (fp32)."""
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(theirs.shape)}"
    error = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    assert error < 1e-4, f"{what}: max error {error:.2e} of the expected tensor's scale"


@pytest.fixture(scope="module")
def golden() -> dict:
    weights = torch.load(GOLDEN / "hallo" / "net.pth", map_location="cpu", weights_only=True)
    return {"config": OmegaConf.load(GOLDEN / "config.yaml"), "weights": weights,
            "inputs": load_file(GOLDEN / "inputs.safetensors"), "expected": load_file(GOLDEN / "expected.safetensors")}


def prefixed(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def test_audio_encoder_equals_hallos_audio_features_and_tokens(golden: dict) -> None:
    config, inputs, expected = golden["config"], golden["inputs"], golden["expected"]
    proj = config.audio_proj
    wav2vec = GOLDEN / "wav2vec" / "wav2vec2-base-960h"
    encoder = registry.build("audio_encoder", "hallo_wav2vec2", pretrained=str(wav2vec),
                             output_dim=proj.output_dim, window=proj.seq_len // 2,
                             intermediate_dim=proj.intermediate_dim, context_tokens=proj.context_tokens,
                             fps=config.data.export_video.fps)
    encoder.proj.load_state_dict(prefixed(golden["weights"], "audioproj."))
    frames = expected["audio_tokens"].shape[1]  # every clip's frames: Hallo pads the audio to whole clips
    with torch.no_grad():
        features = encoder.features(inputs["waveform"][None], frames)
        tokens = encoder.tokens(features)
    # Hallo's audio_emb holds each frame's window of (layers, width) features: its centre slot is the frame's own
    window = expected["audio_emb"]
    assert_matches(features[0].unflatten(-1, window.shape[-2:]), window[:, window.shape[1] // 2], "audio features")
    assert_matches(tokens, expected["audio_tokens"], "audio tokens")
