"""Generate held-out videos and score them: lip sync (with an audio-zeroed ablation and the ground truth
measured by the same code), identity colour and clip-boundary smoothness."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from emo_lightning.components.face_locator.landmark_map import LandmarkTrack, landmark_maps
from emo_lightning.data import FaceIdentity, SyntheticTalkingFaces, render_face
from emo_lightning.data.synthetic import LANDMARK_REGIONS
from emo_lightning.evaluation.metrics import boundary_ratio, identity_color_error, measure_mouth_series, pearson


@dataclass
class HeldOutExample:
    """A test-split identity and audio, never seen in training (splits differ by identity and audio)."""

    identity: FaceIdentity
    portrait: np.ndarray  # (H, W, 3) uint8, neutral mouth
    clip: dict[str, np.ndarray]  # make_clip's ground truth: frames, audio, loudness, mouth_open, mask, ...

    @classmethod
    def make(cls, index: int, seconds: float, fps: float, resolution: int, seed: int = 0) -> HeldOutExample:
        data = SyntheticTalkingFaces(index + 1, stage=3, resolution=resolution, num_frames=round(seconds * fps),
                                     motion_frames=0, fps=fps, seed=seed, split="test")
        identity, clip = data.clip(index)
        return cls(identity, render_face(identity, 0.0, clip["pose"][0], resolution), clip)


def generate_frames(module: Any, example: HeldOutExample, waveform: np.ndarray, seed: int = 0) -> np.ndarray:
    """Generate the example's video for ``waveform`` → (F, H, W, 3) uint8."""
    return np.concatenate(list(_clips(module, example, waveform, seed)))


def _clips(module: Any, example: HeldOutExample, waveform: np.ndarray, seed: int) -> Iterator[np.ndarray]:
    image = torch.from_numpy(example.portrait).permute(2, 0, 1)[None].float().to(module.device) / 127.5 - 1
    mask = torch.from_numpy(example.clip["mask"])[None, None].float().to(module.device)
    wave = torch.from_numpy(waveform)[None].float().to(module.device)
    generator = torch.Generator(module.device).manual_seed(seed)
    speed = float(np.median(example.clip["speed"]))
    size = example.portrait.shape[:2]
    maps = landmark_maps(LandmarkTrack(example.clip["landmarks"], LANDMARK_REGIONS),
                         module.model.face_locator.landmark_style, *size)  # the clip's own head motion
    for clip in module.sampler().generate(image, wave, len(example.clip["frames"]), mask, speed=speed,
                                          generator=generator, landmark_maps=maps):
        yield ((clip[0].permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).byte().cpu().numpy()


def evaluate(module: Any, num_videos: int = 4, seconds: float = 4.0, seed: int = 0, audio_zeroed: bool = True,
             progress: bool = True) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics over ``num_videos`` held-out videos, and per-video series (for plots and the sample video).
    ``audio_zeroed=False`` skips the ablation (half the generation; no ``sync_pearson_audio_zeroed``)."""
    hp = module.hparams
    videos, totals = [], {"gen": [], "zero": [], "truth": [], "loud": []}
    for index in tqdm(range(num_videos), desc="evaluating held-out videos", unit="video", disable=not progress):
        example = HeldOutExample.make(index, seconds, hp.fps, hp.resolution, seed)
        audio = example.clip["audio"]
        frames = generate_frames(module, example, audio, seed)
        series = {"generated": measure_mouth_series(frames, example.identity),
                  "ground_truth": measure_mouth_series(example.clip["frames"], example.identity),
                  "loudness": example.clip["loudness"]}
        if audio_zeroed:
            zeroed = generate_frames(module, example, np.zeros_like(audio), seed)
            series["audio_zeroed"] = measure_mouth_series(zeroed, example.identity)
        for key, name in (("gen", "generated"), ("zero", "audio_zeroed"), ("truth", "ground_truth"),
                          ("loud", "loudness")):
            if name in series:
                totals[key].append(series[name])
        videos.append({"example": example, "frames": frames, "series": series,
                       "color_error": identity_color_error(frames, example.portrait, example.clip["mask"]),
                       "boundary_ratio": boundary_ratio(frames, hp.num_frames) if len(frames) > hp.num_frames
                       else None})
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
