"""Stopping a command cleanly on SIGINT (Ctrl-C) or SIGTERM (``kill``, a scheduler, ``docker stop``).

While :func:`stop_handlers` are installed, either signal raises :class:`Interrupted` where the command is (as Ctrl-C
raises ``KeyboardInterrupt``, but for SIGTERM too): the writers' own cleanup (``with`` blocks, ``except
BaseException``) removes what they had half written, and ``emo`` prints one line and exits 128 + the signal's number
(130 for SIGINT, 143 for SIGTERM). Inside :func:`deferred` a signal is only recorded, and the code stops at its next
safe point (:func:`check`, or the region's end): a file being committed is finished, training saves its checkpoint
first. A second signal raises at once, deferred or not.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop asked for by a signal. Not an ``Exception``: the per-job and per-video ``except Exception`` handlers
    must let it through rather than record it as that job's failure."""

    def __init__(self, signum: int, detail: str = ""):
        self.signum, self.detail = signum, detail
        super().__init__(f"stopped by {signal.Signals(signum).name}{f' {detail}' if detail else ''}")

    def __reduce__(self) -> tuple[type[Interrupted], tuple[int, str]]:  # raised in a worker process, re-raised here
        return Interrupted, (self.signum, self.detail)

    @property
    def exit_code(self) -> int:
        """The shell's status of a process ended by this signal: 130 (SIGINT), 143 (SIGTERM)."""
        return 128 + self.signum


class _State:
    requested: int | None = None  # the first signal received
    deferring = 0  # depth of nested `deferred` regions


def requested() -> int | None:
    """The signal that asked this command to stop, if one did."""
    return _State.requested


def check(detail: str = "") -> None:
    """A safe point: raise :class:`Interrupted` if a signal asked to stop."""
    if _State.requested is not None:
        raise Interrupted(_State.requested, detail)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    first = _State.requested is None
    if first:
        _State.requested = signum
    if not (first and _State.deferring):
        raise Interrupted(_State.requested)


def stop_handlers() -> Callable[[], None]:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` (see the module's docstring); returns the function that
    puts the previous handlers back. Only the main thread can install handlers: elsewhere this does nothing.

    Lightning's trainer adds its own SIGTERM handler in front of an installed one and keeps calling it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _State.requested, _State.deferring = None, 0
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)
    # the command prints its own line: not Lightning's "Received SIGTERM" too
    logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(logging.WARNING)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


@contextmanager
def deferred(detail: str = "") -> Iterator[None]:
    """A region that a first signal does not break into: it ends normally (or at a :func:`check` inside it), then
    :class:`Interrupted` is raised with ``detail`` (what was kept, e.g. a saved checkpoint)."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
    check(detail)
