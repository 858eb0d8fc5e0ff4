"""Writing scores: ``metrics.json``, a Markdown table with the EMO paper's Table 1 columns first, a per-video CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

# metric → (column title, better direction); the paper's Table 1 columns first
COLUMNS = {
    "fid": ("FID", "↓"), "sync_c": ("SyncNet-C", "↑"), "sync_d": ("SyncNet-D", "↓"), "fsim": ("F-SIM", "↑"),
    "fvd": ("FVD", "↓"), "efid": ("E-FID", "↓"),
    "kid": ("KID", "↓"), "ssim": ("SSIM", "↑"), "psnr": ("PSNR", "↑"), "lpips": ("LPIPS", "↓"),
    "lmd": ("LMD", "↓"), "mouth_lmd": ("Mouth LMD", "↓"), "sync_offset": ("SyncNet offset", "→0"),
    "lmk_sync_corr": ("Landmark sync r", "↑"), "lmk_sync_conf": ("Landmark sync conf.", "↑"),
    "lmk_sync_offset": ("Landmark sync offset", "→0"), "lmk_sync_found": ("Landmark sync found", "↑"),
    "drift_identity": ("Drift identity", "↑"), "drift_colour": ("Drift colour", "↓"),
}
PAPER_COLUMNS = ("fid", "sync_c", "sync_d", "fsim", "fvd", "efid")


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "–"


def markdown_table(results: dict[str, Any]) -> str:
    """Two tables: the paper's Table 1 columns, then the others; skipped metrics listed with their reasons."""
    def table(names: tuple[str, ...]) -> list[str]:
        head = [f"{COLUMNS[n][0]} {COLUMNS[n][1]}" for n in names]
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(names),
                "| " + " | ".join(_cell(results.get(n)) for n in names) + " |"]

    others = tuple(n for n in COLUMNS if n not in PAPER_COLUMNS)
    lines = ["EMO Table 1 columns:", "", *table(PAPER_COLUMNS), "", "Other metrics:", "", *table(others)]
    skipped = [f"- {COLUMNS[n][0]}: {v}" for n, v in results.items() if n in COLUMNS and isinstance(v, str)]
    if skipped:
        lines += ["", "Not computed:", *skipped]
    return "\n".join(lines) + "\n"


def write_report(output: str | Path, results: dict[str, Any], per_video: dict[str, list[Any]],
                 names: list[str], extra: dict[str, Any] | None = None) -> None:
    """``metrics.json`` (results + extra), ``metrics.md`` and ``per_video.csv`` in ``output``."""
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({**results, **(extra or {})}, indent=2) + "\n")
    (folder / "metrics.md").write_text(markdown_table(results))
    with open(folder / "per_video.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        columns = list(per_video)
        writer.writerow(["video", *columns])
        for i, name in enumerate(names):
            writer.writerow([name, *(per_video[c][i] for c in columns)])
