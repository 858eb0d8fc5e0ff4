"""Decoding for preprocessing: any container/codec PyAV reads, video resampled to a fixed frame rate and cut into
segments, audio as 16 kHz mono aligned with the resampled frames."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from emo_lightning.media import MediaError, load_audio
from emo_lightning.media.errors import require_file

TRUNCATION_TOLERANCE = 0.95
"""A stream that decodes to less than this share of the duration its container declares is called truncated."""


def resampled_frames(path: str | Path, fps: float) -> Iterator[np.ndarray]:
    """RGB uint8 (H, W, 3) frames of the first video stream at ``fps``, timed from the first frame.

    Output frame k shows the source frame nearest in time to k / fps (frames are repeated or dropped, like
    FFmpeg's fps filter). Raises MediaError for an unreadable file, one without video, a decoding error, or a
    stream that ends well before the duration its container declares (a truncated file).
    """
    path = require_file(path, "video")
    k, start, previous, previous_time = 0, None, None, 0.0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream in {path}")
            stream = container.streams.video[0]
            declared = _declared_seconds(stream, container)
            frame_seconds = 1 / float(stream.average_rate or stream.guessed_rate or fps)
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                start = frame.time if start is None else start
                time = frame.time - start
                if previous is not None:
                    while k / fps < (previous_time + time) / 2 - 1e-9:
                        yield previous
                        k += 1
                previous, previous_time = frame.to_ndarray(format="rgb24"), time
    except av.FFmpegError as err:
        raise MediaError(f"cannot decode video {path}: {err}") from err
    if previous is None:
        raise MediaError(f"video stream in {path} has no frames")
    while k / fps < previous_time + frame_seconds / 2 - 1e-9:
        yield previous
        k += 1
    decoded = previous_time + frame_seconds
    if declared and decoded < TRUNCATION_TOLERANCE * declared:
        raise MediaError(f"{path} is truncated: its video decodes to {decoded:.2f} s of the {declared:.2f} s declared")


def segments(frames: Iterator[np.ndarray], length: int) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a frame stream into ``(first frame index, uint8 (F, H, W, 3))`` segments of ``length`` frames; the tail
    joins the last segment when shorter than half a segment, so segments hold ``length // 2 .. 1.5 * length``
    frames (a video shorter than that is one segment). At most 1.5 * ``length`` frames are held in memory."""
    buffer: list[np.ndarray] = []
    start = 0
    for frame in frames:
        buffer.append(frame)
        if len(buffer) >= length + (length + 1) // 2:
            yield start, np.stack(buffer[:length])
            buffer, start = buffer[length:], start + length
    if buffer:
        yield start, np.stack(buffer)


def has_audio(path: str | Path) -> bool:
    """Whether ``path`` has an audio stream (read from the header)."""
    try:
        with av.open(str(require_file(path, "video"))) as container:
            return bool(container.streams.audio)
    except av.FFmpegError as err:
        raise MediaError(f"cannot open {path}: {err}") from err


def aligned_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 audio at ``sample_rate`` whose sample 0 plays with the first video frame: the gap between the
    streams' start times is cut from or padded (silence) to the audio's start."""
    audio = load_audio(path, sample_rate)
    with av.open(str(path)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        offset = round((_start_seconds(video) - _start_seconds(sound)) * sample_rate)
    return audio[offset:] if offset >= 0 else np.concatenate([np.zeros(-offset, np.float32), audio])


def audio_span(audio: np.ndarray, first: int, count: int, fps: float, sample_rate: int) -> np.ndarray:
    """The samples that play with frames ``first .. first + count - 1``, zero-padded where the audio ends early."""
    lo, hi = round(first * sample_rate / fps), round((first + count) * sample_rate / fps)
    span = audio[lo:hi]
    return np.pad(span, (0, hi - lo - len(span))).astype(np.float32)


def _start_seconds(stream: av.stream.Stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _declared_seconds(stream: av.stream.Stream, container: av.container.InputContainer) -> float | None:
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration is not None else None
