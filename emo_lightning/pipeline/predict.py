"""`emo predict` through Lightning: generation jobs (portrait + audio → video) as a DataModule, and a thin
LightningModule over the pipeline that :func:`~emo_lightning.pipeline.loading.load_pipeline` builds from the checkpoint
(read once; no optimiser, loss or training scheduler).

A job that fails (unreadable file, no face, too-short audio) is reported and the others still run:
:func:`run_job` turns any error into a result, and :func:`report_jobs` reports them all at the end.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from emo_lightning.components.face_locator.landmark_map import LandmarkTrack
from emo_lightning.media import load_audio
from emo_lightning.pipeline.job_files import read_jobs
from emo_lightning.pipeline.landmarks import DEFAULT_LANDMARKS, LandmarksSpec, job_landmarks
from emo_lightning.pipeline.loading import load_pipeline
from emo_lightning.pipeline.pipeline import EMOPipeline
from emo_lightning.pipeline.portrait import DEFAULT_DETECTOR, DetectorSpec, load_portrait
from emo_lightning.pipeline.settings import CONTROLS, GenerationOverrides
from emo_lightning.progress import StepBar


class JobsFailed(ValueError):
    """Some jobs of an ``emo predict`` run failed; the message lists each one."""


class GenerationJobs(Dataset):
    """One item per job: the cropped portrait, its face mask, the audio, the output path and the controls, and
    ``landmarks`` (a :class:`LandmarkTrack`) when ``landmarks`` names the landmark model of a model whose face locator
    draws them (``fps``: the model's). An item whose inputs cannot be read carries ``error`` instead of tensors."""

    def __init__(self, jobs: list[dict[str, Any]], resolution: int | None, sample_rate: int | None,
                 face_detector: DetectorSpec, landmarks: LandmarksSpec | None = None, fps: float = 25.0):
        self.jobs, self.resolution = jobs, resolution
        self.sample_rate, self.face_detector = sample_rate, face_detector
        self.landmarks, self.fps = landmarks, fps

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        job = self.jobs[index]
        item = {"index": index, "count": len(self.jobs), "output": str(job["output"]),
                "controls": {k: job.get(k) for k in CONTROLS}}
        try:
            resolution = job.get("resolution") or self.resolution
            detector = job.get("face_detector") or self.face_detector
            image, mask = load_portrait(job["image"], resolution, detector)
            audio = torch.from_numpy(load_audio(job["audio"], self.sample_rate))
            item["landmarks"] = self._landmarks(job, resolution, detector, len(audio))
        except Exception as err:  # any unreadable input fails this job only
            return {**item, "error": _describe(err)}
        return {**item, "image": image, "mask": mask, "audio": audio}

    def _landmarks(self, job: dict[str, Any], resolution: int, detector: DetectorSpec, samples: int
                   ) -> LandmarkTrack | None:
        """The job's landmark track (the portrait's, or ``pose_video``'s motion on it), for models that use one."""
        if self.landmarks is None:
            if job.get("pose_video"):
                raise ValueError("pose_video drives a face locator that draws landmarks (model.face_locator "
                                 "landmarks); this model's face locator takes none")
            return None
        fps = job.get("fps") or self.fps
        return job_landmarks(job["image"], resolution, detector, self.landmarks, job.get("pose_video"), fps,
                             count=max(1, round(samples / self.sample_rate * fps)))


def collate_jobs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jobs stay separate: their audio lengths (and resolutions) differ."""
    return items


def run_job(pipeline: EMOPipeline, job: dict[str, Any]) -> dict[str, Any]:
    """Generate one job with a progress bar; returns ``{"output", "error"}`` (``error`` None on success)."""
    label = f"job {job['index'] + 1}/{job['count']}" if job["count"] > 1 else "generating"
    error = job.get("error")
    if error is None:
        with StepBar(f"{label} {Path(job['output']).name}") as bar:
            try:
                pipeline.write_video(job["output"], job["image"], job["audio"], job["mask"], on_step=bar,
                                     landmarks=job.get("landmarks"), **job["controls"])
            except Exception as err:  # a failed job must not stop the others
                error = _describe(err)
    if error is not None and job["count"] > 1:  # reported as it happens; a single job's error ends the run
        print(f"{label} failed: {error}", file=sys.stderr)
    return {"output": job["output"], "error": error}


def report_jobs(results: list[dict[str, Any]]) -> None:
    """Print the videos written, then raise :class:`JobsFailed` listing every failed job (a single job's
    error is raised as it is)."""
    for result in results:
        if not result["error"]:
            print(f"wrote {result['output']}")
    failed = [r for r in results if r["error"]]
    if len(results) == 1 and failed:
        raise JobsFailed(failed[0]["error"])
    if failed:
        lines = "\n".join(f"  {r['output']}: {r['error']}" for r in failed)
        raise JobsFailed(f"{len(failed)} of {len(results)} jobs failed:\n{lines}")


def _describe(err: Exception) -> str:
    """Our own errors (ValueError, MediaError, OSError) name the file already; anything else gets its type."""
    return str(err) if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {err}"


class GenerationModule(pl.LightningModule):
    """The model of ``emo predict``: the pipeline of checkpoint ``checkpoint`` (see
    :func:`~emo_lightning.pipeline.loading.load_pipeline`: ``lora``, ``ema``); each predict step generates its jobs."""

    def __init__(self, checkpoint: str, lora: str | None = None, ema: bool = True):
        super().__init__()
        self.pipeline = load_pipeline(checkpoint, lora=lora, ema=ema)
        self.model = self.pipeline.model  # a submodule: Lightning moves it to the run's device

    def predict_step(self, batch: list[dict[str, Any]], batch_idx: int) -> list[dict[str, Any]]:
        """Generate every job of a batch (see :class:`GenerationJobs`); a failed job becomes a result with its
        ``error``, so the others still run."""
        return [run_job(self.pipeline, job) for job in batch]


class PredictDataModule(pl.LightningDataModule):
    """The jobs of one ``emo predict`` run: ``image``/``audio``/``output``, or the rows of a ``jobs`` file
    (CSV/JSONL, see :mod:`emo_lightning.pipeline.job_files`). The ``generation`` controls given here (see
    :class:`~emo_lightning.pipeline.settings.GenerationSettings`) are every job's defaults; None takes the model's own
    (``sample_rate``: its audio encoder's; ``resolution``: its training resolution), read off the
    :class:`GenerationModule`'s pipeline. Inputs are read when generation reaches them.
    For a model whose face locator draws landmarks, ``landmarks`` (a landmark model) finds them on the portrait, or
    on the face of ``pose_video`` (a driving video whose head motion the video follows; see
    :mod:`emo_lightning.pipeline.landmarks`)."""

    def __init__(self, image: str | None = None, audio: str | None = None, output: str = "out.mp4",
                 jobs: str | None = None, resolution: int | None = None, sample_rate: int | None = None,
                 face_detector: DetectorSpec = DEFAULT_DETECTOR, generation: GenerationOverrides | None = None,
                 landmarks: LandmarksSpec = DEFAULT_LANDMARKS, pose_video: str | None = None):
        super().__init__()
        controls = {**dataclasses.asdict(generation or GenerationOverrides()), "resolution": resolution,
                    "face_detector": face_detector, "pose_video": pose_video}
        if jobs is not None:
            if image is not None or audio is not None:
                raise ValueError("give either jobs=<file> or image=… audio=…, not both")
            job_list = read_jobs(jobs, controls)
        else:
            if image is None or audio is None:
                raise ValueError("emo predict needs image=<portrait> and audio=<speech>, or jobs=<csv/jsonl file>")
            for kind, path in (("image", image), ("audio", audio), ("pose_video", pose_video)):
                if path is not None and not Path(path).is_file():
                    raise FileNotFoundError(f"{kind} file {path} does not exist")
            job_list = [{"image": image, "audio": audio, "output": output, **controls}]
        self.sample_rate, self.landmarks = sample_rate, landmarks
        self.jobs = GenerationJobs(job_list, resolution, sample_rate, face_detector)

    def setup(self, stage: str) -> None:
        pipeline: EMOPipeline = self.trainer.lightning_module.pipeline
        self.jobs.sample_rate = self.sample_rate or pipeline.sample_rate
        self.jobs.resolution = self.jobs.resolution or pipeline.layout.resolution
        self.jobs.landmarks = self.landmarks if pipeline.model.face_locator.landmark_style is not None else None
        self.jobs.fps = pipeline.settings.fps

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.jobs, batch_size=1, collate_fn=collate_jobs)
