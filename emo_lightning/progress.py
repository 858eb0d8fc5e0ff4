"""Progress of long commands: a tqdm bar on a terminal, plain lines where there is none (a log file, CI, ``nohup``).

tqdm redraws one line with carriage returns, which a log shows as nothing, or as one endless line, until the end.
Without a terminal, :class:`ProgressLog` writes a line at the start, then at most one every ``EMO_PROGRESS_SECONDS``
(default 30) seconds, and one at the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from emo_lightning.pipeline import Progress

T = TypeVar("T")


def log_interval() -> float:
    """Seconds between two plain progress lines (``EMO_PROGRESS_SECONDS``, default 30)."""
    return float(os.environ.get("EMO_PROGRESS_SECONDS", 30))


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether progress goes to a terminal (stderr by default), where a redrawn bar is readable."""
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class ProgressLog:
    """tqdm's ``update`` / ``set_postfix_str`` / ``close`` as plain lines on stderr:
    ``emo evaluate: 3/10 videos (30%), 12.1 s/video, 1m25s left``."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", every: float | None = None,
                 file: TextIO | None = None, initial: int = 0):
        self.desc, self.total, self.unit = desc, total, unit
        self.every = log_interval() if every is None else every
        self.file = file or sys.stderr
        self.n = self.initial = initial  # `initial`: done before (a resumed run), left out of the rate
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.printed: int | None = None
        self._print()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._print()

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.printed != self.n:
            self._print()

    def _print(self) -> None:
        self.last, elapsed = time.monotonic(), time.monotonic() - self.start
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if self.n > self.initial:
            rate = elapsed / (self.n - self.initial)
            parts.append(f"{rate:.2f} s/{self.unit}" if rate >= 1 else f"{1 / rate:.1f} {self.unit}/s")
            if self.total and self.n < self.total:
                parts.append(f"{_duration(rate * (self.total - self.n))} left")
        if self.postfix:
            parts.append(self.postfix)
        print(f"{self.desc}: {', '.join(parts)}", file=self.file, flush=True)
        self.printed = self.n

    def __enter__(self) -> ProgressLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:  # a failed or stopped command's own message is its last line
            self.close()


def progress_bar(desc: str, total: int | None = None, unit: str = "it", disable: bool = False, initial: int = 0,
                 **tqdm_kwargs: Any) -> tqdm | ProgressLog:
    """A tqdm bar on a terminal, a :class:`ProgressLog` otherwise (``disable``: a bar that shows nothing)."""
    if disable or on_terminal():
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, initial=initial, **tqdm_kwargs)
    return ProgressLog(desc, total, unit, initial=initial)


def track(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None, disable: bool = False
          ) -> Iterator[T]:
    """Iterate ``items`` showing progress (:func:`progress_bar`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(desc, total, unit, disable=disable) as bar:
        for item in items:
            yield item
            bar.update(1)


class StepBar:
    """Pass as ``on_step=`` to :meth:`EMOPipeline.write_video`: progress over the denoising steps of one video (rate,
    time left, current clip); the total is known at the first step."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: tqdm | ProgressLog | None = None

    def __call__(self, progress: Progress) -> None:
        if self.bar is None:  # made after the first step, which its rate leaves out
            self.bar = progress_bar(self.desc, progress.total, "step", initial=progress.step, dynamic_ncols=True)
        self.bar.set_postfix_str(f"clip {progress.clip}/{progress.clips}", refresh=False)
        self.bar.update(progress.step - self.bar.n)

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.__exit__(exc_type, exc, tb)
