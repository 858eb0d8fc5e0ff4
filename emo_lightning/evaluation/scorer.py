"""Scores videos with every metric whose network and inputs are present; the others are reported as skipped with
the reason, never as zero. One instance scores a set of videos (``emo evaluate``, ``emo test``); every metric is a
torchmetrics Metric, so a set split over DDP ranks gives the same result as on one process."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from emo_lightning import registry
from emo_lightning.components.kinds import EVALUATED_KINDS
from emo_lightning.evaluation.face_geometry import (
    EXPRESSION_REGIONS,
    expression_features,
    normalised_shapes,
)
from emo_lightning.evaluation.face_track import sync_crops, track_faces
from emo_lightning.evaluation.frechet import FrechetDistance, KernelDistance, frechet_inception_distance
from emo_lightning.evaluation.identity import cosine_to, drift, face_colour
from emo_lightning.evaluation.landmark_sync import landmark_sync
from emo_lightning.evaluation.syncnet_score import offset_search
from emo_lightning.evaluation.video_scores import VideoScores

PER_VIDEO = ("sync_c", "sync_d", "sync_offset", "lmk_sync_corr", "lmk_sync_conf", "lmk_sync_offset",
             "lmk_sync_found", "fsim", "drift_identity", "drift_colour", "ssim", "psnr", "lmd", "mouth_lmd")
SET_LEVEL = ("fid", "kid", "fvd", "efid")
NEEDS = {  # metric → the components it needs
    "fid": ("frame_features",), "kid": ("frame_features",), "fvd": ("video_features",),
    "efid": ("landmarks",), "lmd": ("landmarks",), "mouth_lmd": ("landmarks",),
    "sync_c": ("sync_model", "face_detector"), "sync_d": ("sync_model", "face_detector"),
    "sync_offset": ("sync_model", "face_detector"),
    "lmk_sync_corr": ("landmarks",), "lmk_sync_conf": ("landmarks",), "lmk_sync_offset": ("landmarks",),
    "lmk_sync_found": ("landmarks",),
    "fsim": ("face_embedder", "face_detector"), "drift_identity": ("face_embedder", "face_detector"),
    "drift_colour": ("face_detector",),
}
GROUND_TRUTH_METRICS = ("fid", "kid", "fvd", "efid", "ssim", "psnr", "lmd", "mouth_lmd")
AUDIO_METRICS = ("sync_c", "sync_d", "sync_offset", "lmk_sync_corr", "lmk_sync_conf", "lmk_sync_offset",
                 "lmk_sync_found")
LPIPS_SKIPPED = ("torchmetrics' LPIPS builds its network with torchvision, which cannot be installed beside the "
                 "CPU torch wheel")


@dataclass
class Video:
    """One video to score: uint8 (F, H, W, 3) frames at ``fps``, its audio (mono at ``sample_rate``) when it has
    sound, the reference portrait (uint8 (H, W, 3)) when given, and the ground-truth frames when given."""

    name: str
    frames: np.ndarray
    fps: float
    audio: np.ndarray | None = None
    sample_rate: int = 16000
    reference: np.ndarray | None = None
    ground_truth: np.ndarray | None = None


def _build(spec: registry.Spec | None, kind: str) -> tuple[Any, str | None]:
    """(component, None), or (None, why not)."""
    name = registry.parse_spec(spec, kind)[0] if spec else "none"
    if name == "none":
        return None, f"no {kind} chosen ({kind}=none)"
    try:
        return registry.build(kind, spec), None
    except (FileNotFoundError, ImportError, registry.RegistryError, ValueError, RuntimeError) as err:
        return None, f"{kind} {name!r} unavailable: {err}"


class VideoScorer:
    """Builds the components named in ``components`` (kind → spec with ``name``) and scores :class:`Video`s.

    ``identity_stride``: embed every n-th frame for F-SIM and drift; ``fvd_frames``: FVD clip length;
    ``drift_seconds``: drift window; ``max_offset``: the sync offset search, in frames; ``device``: where the
    feature networks and the metrics' states live.
    """

    def __init__(self, components: dict[str, dict[str, Any] | None], identity_stride: int = 5,
                 fvd_frames: int = 16, drift_seconds: float = 5.0, max_offset: int = 15,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.identity_stride, self.fvd_frames = identity_stride, fvd_frames
        self.drift_seconds, self.max_offset = drift_seconds, max_offset
        self.components: dict[str, Any] = {}
        self.unavailable: dict[str, str] = {}
        for kind in EVALUATED_KINDS:
            component, reason = _build(components.get(kind), kind)
            if component is None:
                self.unavailable[kind] = reason
            else:
                self.components[kind] = component
        self.scores = VideoScores(PER_VIDEO)
        self.set_metrics: dict[str, Metric] = {}
        if "frame_features" in self.components:
            self.set_metrics["fid"] = frechet_inception_distance(self.components["frame_features"])
            self.set_metrics["kid"] = KernelDistance(self.components["frame_features"])
        if "video_features" in self.components:
            self.set_metrics["fvd"] = frechet_inception_distance(self.components["video_features"])
        if "landmarks" in self.components:
            landmarks = self.components["landmarks"]
            size = sum(len(landmarks.regions[r]) for r in EXPRESSION_REGIONS)
            self.set_metrics["efid"] = FrechetDistance(2 * size)
        if "sync_model" in self.components:
            self.components["sync_model"].to(self.device)
        for metric in (self.scores, *self.set_metrics.values()):
            metric.to(self.device)
        self.skipped: dict[str, str] = {"lpips": LPIPS_SKIPPED}
        self.notes: list[str] = []

    # ---- one video --------------------------------------------------------------------------------------
    def update(self, video: Video) -> dict[str, float]:
        """Score one video; returns its per-video values (NaN where a metric could not be computed)."""
        values: dict[str, float] = {}
        notes: list[str] = []
        boxes = self._boxes(video.frames, notes, "video")
        points = self._landmarks(video.frames, boxes, notes)
        if video.audio is not None:
            values.update(self._syncnet(video, boxes, notes))
            values.update(self._landmark_sync(video, points, notes))
        values.update(self._identity(video, boxes, notes))
        if video.ground_truth is not None:
            values.update(self._against_ground_truth(video, points, notes))
        self.scores.update(values)
        self.notes.append("; ".join(notes))
        return {name: values.get(name, math.nan) for name in PER_VIDEO}

    def _boxes(self, frames: np.ndarray, notes: list[str], what: str) -> np.ndarray | None:
        if "face_detector" not in self.components:
            return None
        try:
            return track_faces(self.components["face_detector"], frames)
        except ValueError as err:
            notes.append(f"{what}: {err}")
            return None

    def _landmarks(self, frames: np.ndarray, boxes: np.ndarray | None, notes: list[str]) -> np.ndarray | None:
        if "landmarks" not in self.components:
            return None
        points = self.components["landmarks"].detect_video(frames, boxes).astype(np.float64)
        if np.isnan(points[:, 0, 0]).mean() > 0.5:
            notes.append(f"landmarks found in only {np.isfinite(points[:, 0, 0]).sum()} of {len(frames)} frames")
            return None
        return points

    def _syncnet(self, video: Video, boxes: np.ndarray | None, notes: list[str]) -> dict[str, float]:
        model = self.components.get("sync_model")
        if model is None or boxes is None:
            return {}
        frames, boxes = video.frames, boxes
        if abs(video.fps - model.fps) > 0.01:  # SyncNet's windows are 5 frames at 25 fps: resample the picture
            picks = np.minimum(np.round(np.arange(0, len(frames) / video.fps, 1 / model.fps) * video.fps).astype(int),
                               len(frames) - 1)
            frames, boxes = frames[picks], boxes[picks]
        if len(frames) < model.window + 2 * self.max_offset:
            notes.append(f"SyncNet: {len(frames)} frames are too few for a ±{self.max_offset}-frame search")
            return {}
        audio = _resample(video.audio, video.sample_rate, model.sample_rate)
        device = next(model.parameters()).device
        with torch.no_grad():
            embedded_video = model.embed_video(sync_crops(frames, boxes, model.crop_size).to(device))
            embedded_audio = model.embed_audio(torch.from_numpy(audio).float().to(device), len(frames))
        return offset_search(embedded_video.cpu(), embedded_audio.cpu(), self.max_offset)

    def _landmark_sync(self, video: Video, points: np.ndarray | None, notes: list[str]) -> dict[str, float]:
        if points is None:
            return {}
        try:
            result = landmark_sync(points, self.components["landmarks"].regions, video.audio, video.sample_rate,
                                   video.fps, self.max_offset, frames=video.frames)
        except ValueError as err:
            notes.append(f"landmark sync: {err}")
            return {}
        if result.offset is None:
            notes.append(f"landmark sync offset undetermined: {result.reason}")
        return {"lmk_sync_corr": result.correlation, "lmk_sync_conf": result.confidence,
                "lmk_sync_offset": math.nan if result.offset is None else float(result.offset),
                "lmk_sync_found": float(result.offset is not None)}

    def _identity(self, video: Video, boxes: np.ndarray | None, notes: list[str]) -> dict[str, float]:
        if boxes is None:
            return {}
        picks = np.arange(0, len(video.frames), self.identity_stride)
        colours = face_colour(video.frames[picks], boxes[picks])
        embedder = self.components.get("face_embedder")
        if embedder is None:
            return drift(picks / video.fps, None, colours, self.drift_seconds)
        embeddings = np.stack([embedder.embed(video.frames[i], boxes[i]) for i in picks]).astype(np.float64)
        values = drift(picks / video.fps, embeddings, colours, self.drift_seconds)
        reference = embeddings[0]
        if video.reference is not None:
            reference_boxes = self._boxes(video.reference[None], notes, "reference")
            reference = embedder.embed(video.reference, None if reference_boxes is None else reference_boxes[0])
        values["fsim"] = float(np.nanmean(cosine_to(np.asarray(reference, np.float64), embeddings)))
        return values

    def _against_ground_truth(self, video: Video, points: np.ndarray | None, notes: list[str]) -> dict[str, float]:
        count = min(len(video.frames), len(video.ground_truth))
        generated = video.frames[:count]
        truth = _resize_frames(video.ground_truth[:count], generated.shape[1:3])
        fake, real = _chw(generated).to(self.device), _chw(truth).to(self.device)
        values = {}
        for name, metric in (("ssim", StructuralSimilarityIndexMeasure(data_range=1.0).to(self.device)),
                             ("psnr", PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)).to(self.device))):
            for lo in range(0, count, 32):
                metric.update(fake[lo : lo + 32].float() / 255, real[lo : lo + 32].float() / 255)
            values[name] = float(metric.compute())
        for name in ("fid", "kid"):
            if name in self.set_metrics:
                for lo in range(0, count, 32):
                    self.set_metrics[name].update(real[lo : lo + 32], real=True)
                    self.set_metrics[name].update(fake[lo : lo + 32], real=False)
        if "fvd" in self.set_metrics:
            clips = self._clips(fake), self._clips(real)
            if len(clips[0]):
                self.set_metrics["fvd"].update(clips[1], real=True)
                self.set_metrics["fvd"].update(clips[0], real=False)
            else:
                notes.append(f"FVD: {count} frames are fewer than one clip of {self.fvd_frames}")
        if points is not None:
            truth_boxes = self._boxes(truth, notes, "ground truth")
            truth_points = self._landmarks(truth, truth_boxes, notes)
            if truth_points is not None:
                values.update(self._landmark_distances(points[:count], truth_points))
        return values

    def _landmark_distances(self, points: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        regions = self.components["landmarks"].regions
        both = np.isfinite(points[:, 0, 0]) & np.isfinite(truth[:, 0, 0])
        self.set_metrics["efid"].update(torch.from_numpy(expression_features(truth[both], regions)), real=True)
        self.set_metrics["efid"].update(torch.from_numpy(expression_features(points[both], regions)), real=False)
        distance = np.linalg.norm(normalised_shapes(points[both], regions) - normalised_shapes(truth[both], regions),
                                  axis=-1)
        lips = np.concatenate([regions["lips_outer"], regions["lips_inner"]])
        return {"lmd": float(100 * distance.mean()), "mouth_lmd": float(100 * distance[:, lips].mean())}

    def _clips(self, frames: torch.Tensor) -> torch.Tensor:
        """Non-overlapping clips (N, 3, fvd_frames, H, W) of (F, 3, H, W) frames."""
        count = len(frames) // self.fvd_frames
        clips = frames[: count * self.fvd_frames].reshape(count, self.fvd_frames, *frames.shape[1:])
        return clips.transpose(1, 2)

    # ---- the set ----------------------------------------------------------------------------------------
    def compute(self, with_ground_truth: bool, with_audio: bool) -> dict[str, float | str]:
        """Every metric's value over the videos so far, or ``"skipped: <reason>"``."""
        results: dict[str, float | str] = {}
        means = {k: float(v) for k, v in self.scores.compute().items()}
        for name in (*SET_LEVEL, *PER_VIDEO, "lpips"):
            reason = self._skip_reason(name, with_ground_truth, with_audio)
            if reason is None and name in self.set_metrics:
                results[name] = self._set_value(name)
            elif reason is None and name in means and math.isfinite(means[name]):
                results[name] = means[name]
            else:
                results[name] = f"skipped: {reason or 'no video gave a value (see the per-video notes)'}"
        return results

    def _set_value(self, name: str) -> float | str:
        if self.set_metrics[name].update_count == 0:
            return "skipped: no video gave a value (see the per-video notes)"
        try:
            value = self.set_metrics[name].compute()
        except (RuntimeError, ValueError) as err:
            return f"skipped: {err}"
        return float(value[0] if isinstance(value, tuple) else value)

    def _skip_reason(self, name: str, with_ground_truth: bool, with_audio: bool) -> str | None:
        if name in self.skipped:
            return self.skipped[name]
        missing = [self.unavailable[k] for k in NEEDS.get(name, ()) if k in self.unavailable]
        if missing:
            return "; ".join(missing)
        if name in GROUND_TRUTH_METRICS and not with_ground_truth:
            return "needs ground-truth videos (ground_truth=<dir>)"
        if name in AUDIO_METRICS and not with_audio:
            return "no video has an audio track"
        return None

    def per_video(self) -> dict[str, list[Any]]:
        return {**self.scores.per_video(), "notes": self.notes}


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    positions = np.arange(round(len(audio) * target / rate)) * rate / target
    return np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)


def _chw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


def _resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frames.shape[1:3] == tuple(size):
        return frames
    resized = F.interpolate(_chw(frames).float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
