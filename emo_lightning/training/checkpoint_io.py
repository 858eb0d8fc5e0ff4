"""Checkpoint files written atomically and without a second copy of the checkpoint in memory.

Lightning's own ``TorchCheckpointIO`` serialises the whole checkpoint into an in-memory buffer before writing it
(one more full copy of every weight and optimizer state), then moves a temporary file that may live on another
file system. Here ``torch.save`` streams into a temporary file beside the target, which is flushed, fsynced and
renamed over the target (``os.replace``), and the directory entry is fsynced: a kill at any moment leaves either the
old file or the new one, never a truncated one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

TEMP_SUFFIX = ".tmp"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` through ``<path>.<pid>.tmp`` + fsync + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def remove_partial_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files that saves killed midway left in ``folder`` (never a finished checkpoint)."""
    partial = [p for p in Path(folder).glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with :func:`atomic_torch_save` for local paths (remote URLs keep Lightning's)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
