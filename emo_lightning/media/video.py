"""MP4 (H.264 + AAC) writing and reading with PyAV."""

from __future__ import annotations

import glob
import math
import os
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from emo_lightning.media.errors import MediaError, require_file

try:
    import fcntl
except ImportError:  # Windows: no file locks, so a killed writer's partial file stays
    fcntl = None  # type: ignore[assignment]

_AAC_FRAME_SAMPLES = 1024  # FFmpeg's AAC encoder takes frames of exactly this size (the last may be shorter)


class Mp4Writer:
    """Stream frames into an H.264/yuv420p MP4, muxing an optional mono AAC soundtrack.

    Frames are encoded as they arrive, so memory does not grow with the clip length. Audio is given up
    front and interleaved with the video as it is written; all of it is kept, even where it runs past
    the last frame (players show the last frame until the sound ends). Output goes to a hidden temporary
    file next to ``path`` that replaces ``path`` only on a successful ``close()``, so an exception or
    crash never leaves a half-written file there. Parent directories are created. A writer holds a lock on its
    temporary file, so that the next writer of the same ``path`` deletes those of killed writers (SIGKILL, power loss:
    no cleanup of their own) and no live one's.

    Use as a context manager::

        with Mp4Writer("out.mp4", fps=25, width=512, height=512, audio=wave) as writer:
            for chunk in chunks:
                writer.write(chunk)
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        width: int,
        height: int,
        audio: np.ndarray | None = None,
        sample_rate: int = 16000,
        crf: int = 18,
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(
                f"H.264 yuv420p needs a positive, even width and height, got {width}x{height}; "
                "crop or pad the frames by one pixel"
            )
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.width, self.height = width, height
        # limit_denominator turns 29.97... floats into the exact NTSC rate 30000/1001.
        self.fps = Fraction(fps).limit_denominator(1001)
        self.sample_rate = sample_rate
        self.num_frames = 0
        self._audio = _validate_audio(audio)
        self._audio_pos = 0  # samples of self._audio already sent to the encoder

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_path = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.partial")
        self._lock = _create_locked(self._tmp_path)
        self._container = None
        try:
            remove_stale_partials(self.path)
            self._container = av.open(str(self._tmp_path), "w", format="mp4", options={"movflags": "+faststart"})
            self._video = self._container.add_stream("libx264", rate=self.fps, options={"crf": str(crf)})
            self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
            self._audio_stream = None
            if self._audio is not None:
                self._audio_stream = self._container.add_stream("aac", rate=sample_rate, layout="mono")
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frames: Any) -> None:
        """Encode frames: uint8 (F, H, W, 3) or (H, W, 3), or float numpy/torch (F, 3, H, W) in [-1, 1]."""
        if self._container is None:
            raise ValueError(f"Mp4Writer for {self.path} is already closed")
        for frame in _iter_rgb_frames(frames):
            if frame.shape != (self.height, self.width, 3):
                raise ValueError(
                    f"frame is {frame.shape[1]}x{frame.shape[0]}, writer expects {self.width}x{self.height}"
                )
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = self.num_frames
            self._container.mux(self._video.encode(video_frame))
            self.num_frames += 1
            self._write_audio(until=math.ceil(self.num_frames / self.fps * self.sample_rate))

    def close(self) -> None:
        """Flush the encoders, finish the file and move it to ``path``."""
        if self._container is None:
            return
        if self.num_frames == 0:
            self.abort()
            raise ValueError(f"no frames were written to {self.path}; nothing saved")
        try:
            self._container.mux(self._video.encode(None))
            if self._audio_stream is not None:
                self._write_audio(until=len(self._audio), final=True)
                self._container.mux(self._audio_stream.encode(None))
            self._container.close()
        except BaseException:
            self.abort()
            raise
        self._container = None
        os.replace(self._tmp_path, self.path)
        self._unlock()

    def abort(self) -> None:
        """Drop the partial output; ``path`` is left untouched."""
        if self._container is not None:
            try:
                self._container.close()
            except av.FFmpegError:
                pass  # the file is deleted anyway
            self._container = None
        self._tmp_path.unlink(missing_ok=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _write_audio(self, until: int, final: bool = False) -> None:
        """Encode audio up to sample ``until`` in whole AAC frames (plus the short tail when ``final``)."""
        if self._audio_stream is None:
            return
        until = min(until, len(self._audio))
        while self._audio_pos < until and (final or until - self._audio_pos >= _AAC_FRAME_SAMPLES):
            chunk = self._audio[self._audio_pos : self._audio_pos + _AAC_FRAME_SAMPLES]
            frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self._audio_pos
            frame.time_base = Fraction(1, self.sample_rate)
            self._container.mux(self._audio_stream.encode(frame))
            self._audio_pos += len(chunk)


def _create_locked(path: Path) -> int | None:
    """Create ``path`` already locked (made under another name, locked, then renamed: no other writer ever sees it
    unlocked); the lock's file descriptor, None without file locks."""
    if fcntl is None:
        path.touch()
        return None
    staging = path.with_name(f"{path.name}-new")
    descriptor = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    os.replace(staging, path)
    return descriptor


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers of ``path`` left (those no live writer holds locked);
    returns them."""
    path, removed = Path(path), []
    if fcntl is None:
        return removed
    for partial in path.parent.glob(f".{glob.escape(path.name)}.*.partial"):
        try:
            descriptor = os.open(partial, os.O_RDWR)
        except OSError:
            continue  # gone meanwhile
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            partial.unlink(missing_ok=True)
            removed.append(partial)
        except OSError:
            pass  # a live writer's
        finally:
            os.close(descriptor)
    return removed


def _validate_audio(audio: np.ndarray | None) -> np.ndarray | None:
    if audio is None:
        return None
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.size == 0 or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(
            f"audio must be a non-empty 1-D float waveform in [-1, 1], got {audio.dtype} {audio.shape}"
        )
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def _iter_rgb_frames(frames: Any) -> Iterator[np.ndarray]:
    """Yield uint8 (H, W, 3) frames one at a time from any accepted layout."""
    if hasattr(frames, "detach"):  # torch tensor; avoids importing torch here
        frames = frames.detach().cpu().float().numpy()
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be (F, H, W, 3) or (H, W, 3), got {frames.shape}")
        yield from frames
    elif np.issubdtype(frames.dtype, np.floating):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"float frames must be (F, 3, H, W) in [-1, 1], got {frames.shape}")
        for frame in frames:
            rgb = ((np.clip(frame, -1.0, 1.0) + 1.0) * 127.5).round().astype(np.uint8)
            yield np.ascontiguousarray(rgb.transpose(1, 2, 0))
    else:
        raise ValueError(f"frames must be uint8 or float, got {frames.dtype}")


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Decode every frame of the first video stream: (uint8 (F, H, W, 3), fps). Loads the whole clip."""
    path = require_file(path, "video")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream in {path}")
            stream = container.streams.video[0]
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
    except av.FFmpegError as err:
        raise MediaError(f"cannot decode video {path}: {err}") from err
    if not frames:
        raise MediaError(f"video stream in {path} has no frames")
    return np.stack(frames), fps


def probe_video(path: str | Path) -> dict[str, Any]:
    """Stream metadata of a video file, without decoding.

    Keys: fps, num_frames, width, height, duration (s), video_codec, and audio_codec,
    audio_sample_rate, audio_duration (s), which are None when there is no audio stream.
    """
    path = require_file(path, "video")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream in {path}")
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            info = {
                "fps": float(video.average_rate or video.guessed_rate or 0),
                "width": video.codec_context.width,
                "height": video.codec_context.height,
                "duration": _stream_seconds(video, container),
                "video_codec": video.codec_context.name,
                "audio_codec": audio.codec_context.name if audio else None,
                "audio_sample_rate": audio.codec_context.sample_rate if audio else None,
                "audio_duration": _stream_seconds(audio, container) if audio else None,
            }
            # Some containers do not store a frame count; counting packets needs no decoding.
            info["num_frames"] = video.frames or sum(1 for p in container.demux(video) if p.size)
    except av.FFmpegError as err:
        raise MediaError(f"cannot read video metadata from {path}: {err}") from err
    return info


def _stream_seconds(stream: av.stream.Stream, container: av.container.InputContainer) -> float | None:
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration is not None else None
