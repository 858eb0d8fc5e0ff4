"""Generate held-out videos and score them: lip sync (with an audio-zeroed ablation and the ground truth
measured by the same code), identity colour and clip-boundary smoothness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emo_lightning.components.face_locator.landmark_map import LandmarkTrack
from emo_lightning.data import FaceIdentity, SyntheticTalkingFaces, render_face
from emo_lightning.data.synthetic import LANDMARK_REGIONS
from emo_lightning.evaluation.metrics import boundary_ratio, identity_color_error, measure_mouth_series, pearson
from emo_lightning.pipeline import EMOPipeline
from emo_lightning.progress import track


@dataclass
class HeldOutExample:
    """A test-split identity and audio, never seen in training (splits differ by identity and audio)."""

    identity: FaceIdentity
    portrait: np.ndarray  # (H, W, 3) uint8, neutral mouth
    clip: dict[str, np.ndarray]  # make_clip's ground truth: frames, audio, loudness, mouth_open, mask, ...

    @classmethod
    def make(cls, index: int, seconds: float, fps: float, resolution: int, seed: int = 0, sample_rate: int = 16000
             ) -> HeldOutExample:
        data = SyntheticTalkingFaces(index + 1, stage=3, resolution=resolution, num_frames=round(seconds * fps),
                                     motion_frames=0, fps=fps, sample_rate=sample_rate, seed=seed, split="test")
        identity, clip = data.clip(index)
        return cls(identity, render_face(identity, 0.0, clip["pose"][0], resolution), clip)

    @property
    def image(self) -> torch.Tensor:
        """The portrait as the pipeline takes it: (3, H, W) in [-1, 1]."""
        return torch.from_numpy(self.portrait).permute(2, 0, 1).float() / 127.5 - 1

    @property
    def mask(self) -> torch.Tensor:
        """The union of the clip's face boxes, (1, H, W)."""
        return torch.from_numpy(self.clip["mask"])[None].float()

    @property
    def speed(self) -> float:
        return float(np.median(self.clip["speed"]))

    @property
    def landmarks(self) -> LandmarkTrack:
        """The clip's own landmarks (its head motion), for a face locator that draws them."""
        return LandmarkTrack(self.clip["landmarks"], LANDMARK_REGIONS)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(3, F, H, W) in [-1, 1] → uint8 (F, H, W, 3)."""
    return ((video.permute(1, 2, 3, 0).float() + 1) * 127.5).round().clamp(0, 255).byte().cpu().numpy()


def generate_frames(pipeline: EMOPipeline, example: HeldOutExample, waveform: np.ndarray, seed: int = 0
                    ) -> np.ndarray:
    """Generate the example's video for ``waveform`` → (F, H, W, 3) uint8."""
    video = pipeline(example.image, torch.from_numpy(waveform), example.mask,
                     total_frames=len(example.clip["frames"]),
                     speed=example.speed, seed=seed, landmarks=example.landmarks)
    return to_uint8(video[0])


def score_held_out_videos(pipeline: EMOPipeline, num_videos: int = 4, seconds: float = 4.0, seed: int = 0,
                          audio_zeroed: bool = True, progress: bool = True
                          ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics over ``num_videos`` held-out videos, and per-video series (for plots and the sample video).
    ``audio_zeroed=False`` skips the ablation (half the generation; no ``sync_pearson_audio_zeroed``)."""
    fps, per_clip = pipeline.settings.fps, pipeline.layout.num_frames
    videos, totals = [], {"gen": [], "zero": [], "truth": [], "loud": []}
    for index in track(range(num_videos), desc="evaluating held-out videos", unit="video", disable=not progress):
        example = HeldOutExample.make(index, seconds, fps, pipeline.layout.resolution, seed, pipeline.sample_rate)
        audio = example.clip["audio"]
        frames = generate_frames(pipeline, example, audio, seed)
        series = {"generated": measure_mouth_series(frames, example.identity),
                  "ground_truth": measure_mouth_series(example.clip["frames"], example.identity),
                  "loudness": example.clip["loudness"]}
        if audio_zeroed:
            zeroed = generate_frames(pipeline, example, np.zeros_like(audio), seed)
            series["audio_zeroed"] = measure_mouth_series(zeroed, example.identity)
        for key, name in (("gen", "generated"), ("zero", "audio_zeroed"), ("truth", "ground_truth"),
                          ("loud", "loudness")):
            if name in series:
                totals[key].append(series[name])
        videos.append({"example": example, "frames": frames, "series": series,
                       "color_error": identity_color_error(frames, example.portrait, example.clip["mask"]),
                       "boundary_ratio": boundary_ratio(frames, per_clip) if len(frames) > per_clip else None})
    loudness = np.concatenate(totals["loud"])
    metrics = {
        "sync_pearson": pearson(np.concatenate(totals["gen"]), loudness),
        "sync_pearson_ground_truth": pearson(np.concatenate(totals["truth"]), loudness),
        "identity_color_error": float(np.mean([v["color_error"] for v in videos])),
        "held_out_videos": num_videos,
        "seconds_per_video": seconds,
    }
    ratios = [v["boundary_ratio"] for v in videos if v["boundary_ratio"] is not None]
    if ratios:  # videos of one clip have no boundary
        metrics["boundary_ratio"] = float(np.mean(ratios))
    if audio_zeroed:
        metrics["sync_pearson_audio_zeroed"] = pearson(np.concatenate(totals["zero"]), loudness)
    return metrics, videos
