"""Inputs a checkpoint can render. A model trained on the procedural synthetic faces (``emo quickstart``'s data) has
never seen a photograph: it draws those cartoon faces and turns a real photo into noise. Its examples are held-out
synthetic portraits and speech (the test split of :mod:`emo_lightning.data.synthetic`, never used in training: the
clips ``emo quickstart`` scores)."""

from __future__ import annotations

import hashlib
import inspect
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from emo_lightning.data import SyntheticDataModule
from emo_lightning.evaluation.synthetic_benchmark import HeldOutExample
from emo_lightning.media import load_image

SYNTHETIC_ONLY = ("was trained on synthetic cartoon faces only (`emo quickstart`'s procedural data): it draws faces "
                  "like the examples and turns a real photo into noise. Pick an example, or use a checkpoint trained "
                  "on real video (`emo preprocess`, `data=preprocessed`).")
"""Why a synthetic-data checkpoint gives noise for a photo (after the checkpoint's name)."""


def trained_on_synthetic(checkpoint: dict[str, Any]) -> bool:
    """Whether ``checkpoint`` was trained on the synthetic data: its data module's saved hyper-parameters name
    :class:`SyntheticDataModule` (``_class_path``, written by ``emo fit``) or are exactly that module's arguments."""
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    class_path = hparams.get("_class_path")
    if class_path:
        return class_path.rsplit(".", 1)[-1] == SyntheticDataModule.__name__
    arguments = set(inspect.signature(SyntheticDataModule).parameters)
    return bool(hparams) and {k for k in hparams if not k.startswith("_")} <= arguments


@dataclass
class Example:
    """A held-out synthetic portrait and its speech, as files to offer and as the exact tensors to generate from."""

    portrait: Path  # PNG, enlarged for display
    audio: Path  # WAV
    image: Tensor  # (3, H, W) in [-1, 1], at the model's resolution
    mask: Tensor  # (1, H, W): the union of the clip's face boxes, as in training
    speed: float  # the clip's median head speed


def synthetic_examples(folder: str | Path, resolution: int, fps: float, seed: int = 0, count: int = 4,
                       seconds: float = 4.0, sample_rate: int = 16000, display: int = 256) -> list[Example]:
    """``count`` held-out synthetic examples at a model's ``resolution`` and ``fps``, written to ``folder`` as
    ``held_out_<i>.png`` (enlarged to ``display`` pixels, nearest neighbour) and ``held_out_<i>.wav``; ``seed`` (the
    data's) picks them as the synthetic benchmark does."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    examples = []
    for index in range(count):
        held_out = HeldOutExample.make(index, seconds, fps, resolution, seed, sample_rate)
        portrait, audio = folder / f"held_out_{index}.png", folder / f"held_out_{index}.wav"
        scale = max(1, display // resolution)
        Image.fromarray(held_out.portrait).resize((resolution * scale,) * 2, Image.Resampling.NEAREST).save(portrait)
        _write_wav(audio, held_out.clip["audio"], sample_rate)
        examples.append(Example(portrait, audio, held_out.image, held_out.mask, held_out.speed))
    return examples


def image_key(path: str | Path) -> str:
    """A key of an image's pixels (the same for a lossless copy of the file under another name)."""
    return hashlib.sha256(np.ascontiguousarray(load_image(path)).tobytes()).hexdigest()


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    samples = (np.clip(audio, -1, 1) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(samples.tobytes())
