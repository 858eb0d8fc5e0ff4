"""Per-video reports (the resume record) and the run's manifest.

``reports/<video id>.json`` is written last for a video, atomically: it exists exactly when the video is done,
kept or skipped, and names the source file's size and modification time so that a changed file is redone.
``manifest.json`` sums the reports up: per video what was kept, what was skipped and why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emo_lightning.preprocess.writer import write_json


def fingerprint(path: str | Path) -> dict[str, int]:
    """What identifies a version of a source file: its size and modification time."""
    stat = os.stat(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def report_path(reports_dir: Path, video_id: str) -> Path:
    return reports_dir / f"{video_id}.json"


def finished(reports_dir: Path, video_id: str, source: str | Path) -> bool:
    """Whether this version of ``source`` was already processed (kept or skipped)."""
    path = report_path(reports_dir, video_id)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("fingerprint") == fingerprint(source)
    except (OSError, json.JSONDecodeError):
        return False


def write_report(reports_dir: Path, report: dict[str, Any]) -> None:
    write_json(report_path(reports_dir, report["id"]), report)


def read_reports(reports_dir: Path) -> list[dict[str, Any]]:
    """Every report, sorted by video id (the data set's item order)."""
    return sorted((json.loads(p.read_text()) for p in reports_dir.glob("*.json")), key=lambda r: r["id"])


def summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over the reports: videos kept (of which stage-1 only, without audio) and skipped, frames, items."""
    kept = [r for r in reports if r["status"] == "kept"]
    return {
        "videos": len(reports),
        "kept": len(kept),
        "stage1_only": sum(not r["has_audio"] for r in kept),
        "skipped": len(reports) - len(kept),
        "items": sum(len(r["segments"]) for r in kept),
        "frames": sum(s["frames"] for r in kept for s in r["segments"]),
    }


def write_manifest(output: Path, settings: dict[str, Any], reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``manifest.json`` (settings, summary, one entry per video without its chunk list); return it."""
    videos = [{k: v for k, v in r.items() if k != "index"} for r in reports]
    manifest = {"settings": settings, "summary": summary(reports), "videos": videos}
    write_json(output / "manifest.json", manifest)
    return manifest
