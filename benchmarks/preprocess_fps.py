"""Preprocessing throughput: frames per second of `emo preprocess` with 1 and 2 workers, in the same run.

    python benchmarks/preprocess_fps.py [--video PATH] [--copies 4] [--resolution 512]

The video (default: the shared HDTF sample clip) is copied ``--copies`` times under distinct names, and the same
inputs are preprocessed from scratch with each worker count; frames/s counts source frames at the target fps
over the wall time of the whole run (pool start, decode, detection, speed, crop, JPEG, LitData writing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from emo_lightning.preprocess import Settings, run

SAMPLE = Path(os.environ.get("EMO_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "samples"))


def frames_per_second(videos: Path, output: Path, settings: Settings, workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    manifest = run(videos, output, settings, {"name": "opencv_haar"}, {"name": "flow"}, workers=workers,
                   progress=False)
    seconds = time.perf_counter() - start
    return manifest["summary"]["frames"] / seconds, manifest["summary"]["frames"]


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
        results = {workers: frames_per_second(videos, Path(tmp) / f"out{workers}", settings, workers)
                   for workers in (1, 2)}
    for workers, (fps, frames) in results.items():
        print(f"workers={workers}: {fps:6.1f} frames/s ({frames} frames, {args.copies} videos)")
    print(f"speed-up 2 vs 1 workers: {results[2][0] / results[1][0]:.2f}x  (CPU cores here: {os.cpu_count()})")


if __name__ == "__main__":
    main()
