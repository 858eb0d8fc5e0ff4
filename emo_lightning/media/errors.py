"""The one exception media loaders raise for bad input files."""

from __future__ import annotations

from pathlib import Path


class MediaError(ValueError):
    """A media file is missing, empty, corrupt or of an unsupported kind.

    The message always names the file; the original decoder error, if any, is chained as ``__cause__``.
    """


def require_file(path: str | Path, kind: str) -> Path:
    """Return ``path`` as a Path if it is a non-empty regular file, else raise MediaError."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{kind} file not found: {path}")
    if not path.is_file():
        raise MediaError(f"{kind} path is not a regular file: {path}")
    if path.stat().st_size == 0:
        raise MediaError(f"{kind} file is empty (0 bytes): {path}")
    return path
