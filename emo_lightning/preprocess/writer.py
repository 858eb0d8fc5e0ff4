"""LitData chunks per video, committed atomically, and the data set's merged ``index.json``.

Each video is written by LitData's own ``BinaryWriter`` into a private work folder; ``commit`` moves its chunk
files into the data set folder under names unique to the attempt, so a killed run leaves at most unreferenced
chunk files (removed by the next ``write_index``), never a partial video in the index.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

try:
    from litdata.streaming.writer import BinaryWriter
except ImportError as err:  # see README: litdata is installed with --no-deps
    raise ImportError("emo preprocess needs litdata, installed on its own because it requires torchvision (which "
                      "breaks the CPU torch wheel): pip install --no-deps \"litdata>=0.2.70,<0.3\"") from err

INDEX = "index.json"


class VideoWriter:
    """Collects one video's items; nothing is visible in ``data_dir`` before :meth:`commit`."""

    def __init__(self, data_dir: Path, work_dir: Path, video_id: str, chunk_bytes: str):
        self.data_dir, self.video_id = data_dir, video_id
        self.work = work_dir / f"{video_id}.{uuid.uuid4().hex[:8]}"
        self.writer = BinaryWriter(cache_dir=str(self.work), chunk_bytes=chunk_bytes)
        self.count = 0

    def add(self, item: dict[str, Any]) -> None:
        with warnings.catch_warnings():  # a segment larger than chunk_bytes just makes a larger chunk
            warnings.filterwarnings("ignore", message="An item was larger than the target chunk size")
            self.writer[self.count] = item
        self.count += 1

    def commit(self) -> dict[str, Any]:
        """Move the chunks into the data set folder; return their LitData index (``config`` and ``chunks``)."""
        if self.count == 0:
            self.abort()
            return {"config": None, "chunks": []}
        self.writer.done()
        index = json.loads(next(self.work.glob("*.index.json")).read_text())
        token = self.work.name.rsplit(".", 1)[1]
        for chunk in index["chunks"]:
            name = f"chunk-{self.video_id}-{token}-{chunk['filename'].removeprefix('chunk-')}"
            os.replace(self.work / chunk["filename"], self.data_dir / name)
            chunk["filename"] = name
        self.abort()
        return index

    def abort(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def write_json(path: Path, content: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(content, indent=1))
    os.replace(tmp, path)


def write_index(data_dir: Path, parts: list[dict[str, Any]], metadata: dict[str, Any]) -> None:
    """Merge the committed LitData indexes ``parts`` (in item order) into ``data_dir/index.json`` with our
    ``metadata`` under the key ``"emo"`` (LitData ignores it), then delete chunk files no index refers to."""
    parts = [p for p in parts if p["chunks"]]
    if parts:
        chunks = [chunk for part in parts for chunk in part["chunks"]]
        write_json(data_dir / INDEX, {"chunks": chunks, "config": parts[0]["config"], "emo": metadata})
    else:
        (data_dir / INDEX).unlink(missing_ok=True)
    referenced = {chunk["filename"] for part in parts for chunk in part["chunks"]}
    for path in data_dir.glob("chunk-*.bin"):
        if path.name not in referenced:
            path.unlink()
