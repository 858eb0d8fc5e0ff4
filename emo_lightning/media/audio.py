"""Audio decoding with PyAV: any container/codec FFmpeg reads, to float32 mono at a chosen rate."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from emo_lightning.media.errors import MediaError, require_file


def load_audio(path: str | Path, sample_rate: int = 16000, from_first_frame: bool = False) -> np.ndarray:
    """Decode the first audio stream of ``path`` (an audio file or a video with sound).

    ``from_first_frame``: sample 0 is the time of the video's first frame (the streams' own timestamps decide:
    an audio track that starts later is preceded by silence, one that starts earlier is cut), so that audio and
    picture line up as a player shows them.

    Returns float32 mono samples in [-1, 1], shape (S,), resampled to ``sample_rate`` Hz, with the
    channels averaged. (FFmpeg's own float downmix to mono adds the channels at -3 dB each, which lifts
    correlated stereo up to +3 dB and would clip loud speech.) Raises MediaError for a missing, empty
    or corrupt file, one without an audio stream, or one whose audio decodes to zero samples.
    """
    path = require_file(path, "audio")
    chunks: list[np.ndarray] = []
    audio_start = video_start = 0.0
    try:
        if from_first_frame:
            video_start = _first_video_time(path)
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"no audio stream in {path} (streams: {_stream_kinds(container)})")
            resampler = av.AudioResampler(format="fltp", rate=sample_rate)  # keeps the input layout
            for frame in container.decode(container.streams.audio[0]):
                if not chunks and frame.time is not None:
                    audio_start = float(frame.time)
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            # The resampler buffers a few ms internally; flushing returns the tail.
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    except MediaError:
        raise
    except (av.FFmpegError, ValueError) as err:  # ValueError: e.g. the channel layout changes mid-stream
        raise MediaError(f"cannot decode audio from {path}: {err}") from err
    samples = np.concatenate(chunks, axis=1).mean(axis=0, dtype=np.float32) if chunks else np.zeros(0)
    if samples.size == 0:
        raise MediaError(f"audio stream in {path} decoded to zero samples")
    if from_first_frame:
        lead = round((audio_start - video_start) * sample_rate)
        samples = np.pad(samples, (lead, 0)) if lead > 0 else samples[-lead:]
    return np.clip(samples, -1.0, 1.0, out=samples)


def _first_video_time(path: Path) -> float:
    """Presentation time (s) of the first decoded video frame; 0 for a file without video."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            return 0.0
        for frame in container.decode(container.streams.video[0]):
            return float(frame.time or 0.0)
    return 0.0


def audio_duration(path: str | Path) -> float:
    """Duration in seconds of the first audio stream, from container metadata (no decoding)."""
    path = require_file(path, "audio")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"no audio stream in {path} (streams: {_stream_kinds(container)})")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
    except av.FFmpegError as err:
        raise MediaError(f"cannot read audio metadata from {path}: {err}") from err
    raise MediaError(f"{path} does not record its audio duration; use len(load_audio(path)) / rate")


def _stream_kinds(container: av.container.InputContainer) -> str:
    return ", ".join(stream.type for stream in container.streams) or "none"
