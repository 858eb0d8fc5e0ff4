"""`emo quickstart`: make data, train the tiny EMO on the CPU, generate a held-out video."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from emo_lightning.data import SyntheticTalkingFaces, render_face


def held_out_example(seconds: float = 4.0, fps: float = 25.0, resolution: int = 32, seed: int = 0
                     ) -> dict[str, Any]:
    """A test-split identity and audio (never seen in training): neutral portrait, audio, ground truth."""
    data = SyntheticTalkingFaces(1, stage=3, resolution=resolution, num_frames=round(seconds * fps),
                                 motion_frames=0, fps=fps, seed=seed, split="test")
    identity, clip = data.clip(0)
    portrait = render_face(identity, 0.0, clip["pose"][0], resolution)
    return {"identity": identity, "portrait": portrait, **clip}


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def quickstart(output: str | Path = "quickstart", overrides: list[str] | None = None) -> Path:
    """Train ``experiment=tiny`` (plus ``overrides``) into ``<output>/run`` and write ``<output>/sample.mp4``."""
    from emo_lightning.cli import fit_config, run_lightning_cli

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    cfg = fit_config(["experiment=tiny", f"trainer.default_root_dir={out / 'run'}", *(overrides or [])])
    model_cfg = cfg["model"]
    example = held_out_example(fps=model_cfg["fps"], resolution=model_cfg["resolution"])
    Image.fromarray(example["portrait"]).save(out / "portrait.png")
    write_wav(out / "speech.wav", example["audio"], 16000)

    cli = run_lightning_cli({"subcommand": "fit", "fit": cfg})
    module = cli.model.eval()
    image = torch.from_numpy(example["portrait"]).permute(2, 0, 1)[None].float() / 127.5 - 1
    mask = torch.from_numpy(example["mask"])[None, None].float()
    module.generate_video(image, torch.from_numpy(example["audio"]), mask, out / "sample.mp4")
    return out / "sample.mp4"
