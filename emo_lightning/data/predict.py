"""Generation jobs (portrait + audio → video) as a DataModule, so `emo predict` runs through Lightning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from emo_lightning.media import load_audio, load_image


def square_crop(image: np.ndarray, resolution: int) -> np.ndarray:
    """Centre square crop resized to ``resolution``² (uint8 HWC)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top:top + side, left:left + side])
    return np.array(crop.resize((resolution, resolution), Image.Resampling.LANCZOS))


def central_face_mask(resolution: int, margin: float = 0.15) -> torch.Tensor:
    """The face-region mask for an already-cropped portrait: the central box, (1, H, W)."""
    mask = torch.zeros(1, resolution, resolution)
    lo, hi = round(margin * resolution), round((1 - margin) * resolution)
    mask[:, lo:hi, lo:hi] = 1.0
    return mask


class GenerationJobs(Dataset):
    """One item per job: ``image``, ``audio``, ``output`` paths plus optional sampling controls
    (``seed``, ``steps``, ``guidance_reference``, ``guidance_audio``, ``speed``; None = the model's default).
    Items are ready for :meth:`EMOLightningModule.predict_step`."""

    def __init__(self, jobs: list[dict[str, Any]], resolution: int, sample_rate: int):
        self.jobs, self.resolution, self.sample_rate = jobs, resolution, sample_rate

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        job = self.jobs[index]
        image = square_crop(load_image(job["image"]), self.resolution)
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0,
            "audio": torch.from_numpy(load_audio(job["audio"], self.sample_rate)),
            "mask": central_face_mask(self.resolution),
            "output": str(job["output"]),
            "controls": {k: job.get(k) for k in CONTROLS},
        }


CONTROLS = ("seed", "steps", "guidance_reference", "guidance_audio", "speed")


def collate_jobs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors of equal shape; keep per-job paths, audio of any length and controls as lists."""
    return {key: torch.stack([i[key] for i in items]) if key in ("image", "mask") else [i[key] for i in items]
            for key in items[0]}


class PredictDataModule(pl.LightningDataModule):
    """A single job from ``image``/``audio``/``output``; its inputs are read when generation starts."""

    def __init__(self, image: str, audio: str, output: str = "out.mp4", resolution: int = 512,
                 sample_rate: int = 16000, seed: int = 0, steps: int | None = None,
                 guidance_reference: float | None = None, guidance_audio: float | None = None,
                 speed: float | None = None):
        super().__init__()
        for kind, path in (("image", image), ("audio", audio)):
            if not Path(path).is_file():
                raise FileNotFoundError(f"{kind} file {path} does not exist")
        job = {"image": image, "audio": audio, "output": output, "seed": seed, "steps": steps,
               "guidance_reference": guidance_reference, "guidance_audio": guidance_audio, "speed": speed}
        self.jobs = GenerationJobs([job], resolution, sample_rate)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.jobs, batch_size=1, collate_fn=collate_jobs)
