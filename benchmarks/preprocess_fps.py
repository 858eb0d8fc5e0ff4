"""Preprocessing throughput: frames per second of `emo preprocess` with 1 and 2 workers, in the same run.

    python benchmarks/preprocess_fps.py [--video PATH] [--copies 4] [--resolution 512]

The video (default: the shared HDTF sample clip) is copied ``--copies`` times under distinct names, and the same
inputs are preprocessed from scratch with each worker count; frames/s counts source frames at the target fps
over the wall time of the whole run (decode, detection, landmarks, speed, crop, JPEG, LitData writing; the default
components of `emo preprocess`), after a warm-up
that starts the worker pool's server (a one-time cost per process).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from emo_lightning.config import compose_config
from emo_lightning.media import Mp4Writer, read_video
from emo_lightning.preprocess import Settings
from emo_lightning.preprocess.runner import run

SAMPLE = Path(os.environ.get("EMO_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "samples"))


DEFAULTS = compose_config("preprocess", ["input=unused", "output=unused"])
"""`emo preprocess`'s own defaults: its face detector, pose estimator and landmarks are the ones measured."""
COMPONENTS = {"face_detector": DEFAULTS["face_detector"], "pose_estimator": DEFAULTS["pose_estimator"],
              "landmarks": DEFAULTS["landmarks"]}


def frames_per_second(videos: Path, output: Path, settings: Settings, workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    manifest = run(videos, output, settings, workers=workers, progress=False, **COMPONENTS)
    seconds = time.perf_counter() - start
    return manifest["summary"]["frames"] / seconds, manifest["summary"]["frames"]


def warm_up(video: Path, folder: Path, settings: Settings) -> None:
    """Start the worker pool's server once (it imports torch and diffusers, ~10 s, once per process) on two
    copies of the video's first 10 frames, so that the timed runs measure steady-state throughput."""
    frames, fps = read_video(video)
    for i in range(2):
        with Mp4Writer(folder / "videos" / f"warm_{i}.mp4", fps, frames.shape[2], frames.shape[1]) as writer:
            writer.write(frames[:10])
    run(folder / "videos", folder / "out", settings, workers=2, progress=False, **COMPONENTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=SAMPLE / "hdtf_clip.mp4")
    parser.add_argument("--copies", type=int, default=4, help="videos per run (each worker takes whole videos)")
    parser.add_argument("--resolution", type=int, default=512)
    args = parser.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"no video at {args.video}: pass --video or set EMO_SAMPLES")
    settings = Settings(resolution=args.resolution)
    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(tmp) / "videos"
        videos.mkdir()
        for i in range(args.copies):
            shutil.copy(args.video, videos / f"copy_{i:03d}{args.video.suffix}")
        warm_up(args.video, Path(tmp) / "warm-up", settings)
        results = {workers: frames_per_second(videos, Path(tmp) / f"out{workers}", settings, workers)
                   for workers in (1, 2)}
    for workers, (fps, frames) in results.items():
        print(f"workers={workers}: {fps:6.1f} frames/s ({frames} frames, {args.copies} videos)")
    print(f"speed-up 2 vs 1 workers: {results[2][0] / results[1][0]:.2f}x  (CPU cores here: {os.cpu_count()})")


if __name__ == "__main__":
    main()
