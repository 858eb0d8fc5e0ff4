"""``emo evaluate``: score a set of MP4s, matched by file name with reference portraits and ground-truth videos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emo_lightning.components.kinds import EVALUATED_KINDS
from emo_lightning.evaluation.report import write_report
from emo_lightning.evaluation.scorer import Video, VideoScorer
from emo_lightning.interrupt import deferred
from emo_lightning.media import MediaError, load_audio, load_image, read_video
from emo_lightning.progress import track

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def list_videos(videos: str | list[str]) -> list[Path]:
    """A folder (its videos, sorted), a video file, a .txt list of paths, or a list of these."""
    items = videos if isinstance(videos, list | tuple) else [videos]
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.suffix == ".txt" and path.is_file():
            found += list_videos([line.strip() for line in path.read_text().splitlines() if line.strip()])
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"videos: {path} is neither a video file, a folder nor a .txt list")
    if not found:
        raise FileNotFoundError(f"videos={videos!r} holds no video ({', '.join(VIDEO_SUFFIXES)})")
    return found


def match(folder: str | None, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    """The file named ``stem`` with one of ``suffixes`` in ``folder`` (None when no folder is given)."""
    if not folder:
        return None
    for suffix in suffixes:
        for candidate in (Path(folder) / f"{stem}{suffix}", Path(folder) / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"no file named {stem} ({', '.join(suffixes)}) in {folder}")


def load(path: Path, reference_dir: str | None, ground_truth_dir: str | None, sample_rate: int) -> Video:
    frames, fps = read_video(path)
    try:
        audio = load_audio(path, sample_rate, from_first_frame=True)
    except MediaError:  # a silent video: the sync metrics are skipped for it
        audio = None
    reference = match(reference_dir, path.stem, IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    if reference is not None:
        reference = read_video(reference)[0][0] if reference.suffix.lower() in VIDEO_SUFFIXES else \
            np.asarray(load_image(reference))
    truth = match(ground_truth_dir, path.stem, VIDEO_SUFFIXES)
    return Video(path.stem, frames, fps, audio, sample_rate, reference,
                 None if truth is None else read_video(truth)[0])


def evaluate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Score ``cfg['videos']``; write metrics.json, metrics.md and per_video.csv to ``cfg['output']``."""
    paths = list_videos(cfg["videos"])
    scorer = VideoScorer({kind: cfg.get(kind) for kind in EVALUATED_KINDS},
                         **cfg.get("options", {}), device=cfg.get("device", "cpu"))
    with_audio = False
    for path in track(paths, desc="emo evaluate", unit="video"):
        video = load(path, cfg.get("reference"), cfg.get("ground_truth"), cfg.get("sample_rate", 16000))
        with_audio |= video.audio is not None
        scorer.update(video)
    results = scorer.compute(with_ground_truth=bool(cfg.get("ground_truth")), with_audio=with_audio)
    components = {k: (cfg.get(k) or {}).get("name") for k in EVALUATED_KINDS}
    with deferred():  # a stop waits for the three files to be whole
        write_report(cfg["output"], results, scorer.per_video(), [p.name for p in paths],
                     {"videos": len(paths), "components": components})
    return results
