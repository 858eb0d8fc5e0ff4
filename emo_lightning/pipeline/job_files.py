"""Job lists for ``emo predict jobs=FILE``: one video per row of a CSV (with a header) or JSONL file.

Columns: ``image``, ``audio``, ``output`` and, optionally, ``pose_video``, ``resolution``, ``face_detector`` and any
generation control of :class:`~emo_lightning.pipeline.settings.GenerationSettings` (read and checked with its
types); an empty cell
takes the value given on the command line (or the model's default). Relative paths are relative to the job file.
The whole file is checked before anything runs, so a typo fails at once rather than after hours.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from emo_lightning.pipeline.settings import CONTROL_TYPES, switch

PATHS = ("image", "audio", "output")
OPTIONAL_PATHS = ("pose_video",)  # a driving video whose head motion a landmark face locator follows
PORTRAIT_COLUMNS: dict[str, type] = {"resolution": int, "face_detector": str}
"""How the portrait is read."""
SETTING_COLUMNS: dict[str, Any] = {**CONTROL_TYPES, **PORTRAIT_COLUMNS}
"""Every optional column that is not a path: the generation controls, and how the portrait is read."""


class JobFileError(ValueError):
    """A job file that cannot be read, or a row that is not a valid job."""


def read_jobs(path: str | Path, defaults: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The jobs of ``path`` (``.csv`` or ``.jsonl``), each a dict of the paths and every control."""
    path = Path(path)
    if not path.is_file():
        raise JobFileError(f"job file {path} does not exist")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [(i + 2, row) for i, row in enumerate(csv.DictReader(f))]
    elif path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = [(i + 1, _json_row(line, path, i + 1)) for i, line in
                enumerate(path.read_text(encoding="utf-8").splitlines()) if line.strip()]
    else:
        raise JobFileError(f"job file {path} must be .csv or .jsonl, not {path.suffix or 'extensionless'}")
    if not rows:
        raise JobFileError(f"job file {path} lists no jobs")
    jobs = [_job(row, path, line, defaults or {}) for line, row in rows]
    outputs = [job["output"] for job in jobs]
    duplicates = sorted({o for o in outputs if outputs.count(o) > 1})
    if duplicates:
        raise JobFileError(f"{path}: several jobs write the same output: {', '.join(duplicates)}")
    return jobs


def _json_row(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise JobFileError(f"{path}:{number}: not a JSON object: {err}") from err
    if not isinstance(row, dict):
        raise JobFileError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
    return row


def _job(row: dict[str, Any], path: Path, line: int, defaults: dict[str, Any]) -> dict[str, Any]:
    where = f"{path}:{line}"
    unknown = sorted(str(k) for k in row if k not in PATHS and k not in OPTIONAL_PATHS and k not in SETTING_COLUMNS)
    if unknown:
        columns = [*PATHS, *OPTIONAL_PATHS, *SETTING_COLUMNS]
        raise JobFileError(f"{where}: unknown column(s) {unknown}; columns are {columns}")
    job: dict[str, Any] = {}
    for key in PATHS:
        value = row.get(key)
        if value in (None, ""):
            raise JobFileError(f"{where}: the job has no {key!r}")
        job[key] = str(path.parent / str(value).strip())
    for key in OPTIONAL_PATHS:
        value = row.get(key)
        job[key] = defaults.get(key) if value in (None, "") else str(path.parent / str(value).strip())
    for key, kind in SETTING_COLUMNS.items():
        value = row.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            job[key] = defaults.get(key)
            continue
        try:
            job[key] = kind(value.strip() if isinstance(value, str) else value)
        except ValueError as err:
            raise JobFileError(f"{where}: {key} must be {_type_name(kind)}, got {value!r}") from err
    return job


def _type_name(kind: Any) -> str:
    return "true or false" if kind is switch else kind.__name__
