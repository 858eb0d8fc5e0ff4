"""One video → data set items: decode, face track, crop, head speed, audio; each segment one item."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from emo_lightning.components.base import VAE, AudioEncoder, FaceDetector, FaceLandmarks, PoseEstimator
from emo_lightning.geometry import DEFAULT_MARGIN, boxes_in_crop, crop_frames, points_in_crop, square_region
from emo_lightning.preprocess.crop import DEFAULT_MIN_FACE
from emo_lightning.preprocess.decode import aligned_audio, audio_span, has_audio, resampled_frames, segments
from emo_lightning.preprocess.faces import face_track


@dataclass(frozen=True)
class Settings:
    """What a preprocessed data set is made with; a data set folder holds one setting throughout."""

    fps: float = 25.0
    resolution: int = 512
    sample_rate: int = 16000
    segment_seconds: float = 5.0  # one item per segment: its frames, boxes, speeds and audio
    margin: float = DEFAULT_MARGIN
    min_face: float = DEFAULT_MIN_FACE
    min_face_frames: float = 0.9  # a segment with a face in fewer of its frames is dropped
    jpeg_quality: int = 95
    cache_vae: dict[str, Any] | None = None  # a VAE spec (like model.vae): store each frame's latents too
    cache_audio: dict[str, Any] | None = None  # an audio encoder spec: store its frozen features per frame too

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode_jpegs(frames: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (F, H, W, 3) RGB → (all JPEG bytes concatenated as uint8, offsets int64 (F + 1,))."""
    blobs = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].ravel() for f in frames]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    return np.concatenate(blobs).astype(np.uint8), offsets


@torch.no_grad()
def encode_latents(vae: VAE, crops: np.ndarray, batch: int = 8) -> np.ndarray:
    """uint8 (F, H, W, 3) crops → the VAE's latents float16 (F, C, H/d, W/d), as training would encode them."""
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
    return torch.cat([vae.encode(chunk) for chunk in images.split(batch)]).half().numpy()


@torch.no_grad()
def encode_audio_features(encoder: AudioEncoder, audio: np.ndarray, num_frames: int) -> np.ndarray:
    """float32 (S,) audio of ``num_frames`` video frames → the encoder's frozen features float16 (F, feature_dim), as
    training would compute them from this audio (long audio in windows, see :func:`encode_audio`)."""
    from emo_lightning.model.audio_windows import encode_audio

    if len(audio) == 0:
        return np.zeros((0, encoder.feature_dim), np.float16)
    waveform = torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None]
    return encode_audio(encoder, waveform, num_frames, features=True)[0].half().numpy()


def process_video(path: str | Path, video_id: str, identity: str, settings: Settings, detector: FaceDetector,
                  estimator: PoseEstimator, emit: Callable[[dict[str, Any]], None],
                  vae: VAE | None = None, audio_encoder: AudioEncoder | None = None,
                  landmarks: FaceLandmarks | None = None) -> dict[str, Any]:
    """Turn one video into items handed to ``emit``; return the report fields (frames, segments kept/dropped).

    A segment is kept when a face is found in at least ``min_face_frames`` of its frames; its square crop is the
    union of its face boxes grown by ``margin``. With a ``vae`` each item also holds its frames' ``latents``, with an
    ``audio_encoder`` its frames' ``audio_features`` (the encoder's frozen part; (0, feature_dim) without sound);
    with ``landmarks``, each frame's ``landmarks`` float16 (F, num_points, 2) in crop pixels (found on the source
    frame in its face box; NaN where none).
    Raises MediaError for unreadable or truncated files (the caller discards anything already emitted).
    """
    sound = has_audio(path)
    audio = aligned_audio(path, settings.sample_rate) if sound else None
    length = max(2, round(settings.segment_seconds * settings.fps))
    kept, dropped, frames_total = [], [], 0
    for first, frames in segments(resampled_frames(path, settings.fps), length):
        frames_total += len(frames)
        boxes, found = face_track(frames, detector, settings.min_face)
        share = found.mean()
        if len(frames) < 2 or share < settings.min_face_frames:
            why = "shorter than 2 frames" if len(frames) < 2 else f"a face in {share:.0%} of frames"
            dropped.append({"first_frame": first, "frames": len(frames), "reason": why})
            continue
        union = np.concatenate([boxes[:, :2].min(0), boxes[:, 2:].max(0)])
        region = square_region(union, frames.shape[2], frames.shape[1], settings.margin)
        crops = crop_frames(frames, region, settings.resolution)
        jpeg, offsets = encode_jpegs(crops, settings.jpeg_quality)
        cached = {"latents": encode_latents(vae, crops)} if vae is not None else {}
        clip_audio = (audio_span(audio, first, len(frames), settings.fps, settings.sample_rate) if sound
                      else np.zeros(0, np.float32))
        if audio_encoder is not None:
            cached["audio_features"] = encode_audio_features(audio_encoder, clip_audio, len(frames))
        if landmarks is not None:
            points = points_in_crop(landmarks.detect_video(frames, boxes), region, settings.resolution)
            cached["landmarks"] = points.astype(np.float16)
        emit({
            "key": f"{video_id}/{len(kept)}",
            "identity": identity,
            "jpeg": jpeg,
            "offsets": offsets,
            "boxes": boxes_in_crop(boxes, region, settings.resolution),
            "face_found": found.astype(np.uint8),
            "speed": estimator.speed(frames, boxes).astype(np.float32),
            "audio": clip_audio,
            **cached,
        })
        kept.append({"first_frame": first, "frames": len(frames), "region": list(region)})
    return {"has_audio": sound, "frames": frames_total, "segments": kept, "dropped_segments": dropped}
