"""Stopping cleanly on SIGINT (Ctrl-C) and SIGTERM.

The CLI turns both signals into :class:`Interrupted`, a ``BaseException``: library code
that catches ``Exception`` (a failed image, a Ray task error) lets it through, and the
code that owns a resource (the extraction's drain loop, which marks the store
"interrupted") sees it, cleans up and re-raises it. :func:`fovea_ray.cli.main` prints one
line and exits ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).

Why not ``KeyboardInterrupt``: typer's command runner turns a ``KeyboardInterrupt`` into
a *returned* exit code 130 when the app runs with ``standalone_mode=False``, as fovea-ray
does, so the CLI exited 0 and said nothing. And ``ray.init`` replaces the driver's SIGTERM
handler with ``sys.exit(15)``; :func:`keep_handlers` puts ours back after it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from fovea_ray.errors import in_chain

__all__ = ["Interrupted", "interruption_in", "keep_handlers", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The process received SIGINT or SIGTERM.

    Parameters
    ----------
    signum : int
        The signal number.

    Attributes
    ----------
    progress : str
        What was done before the stop, in words (set by the code that knows, e.g.
        "24 of 38 samples done"); empty when nothing is known.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)
        self.progress = ""

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    def __str__(self) -> str:
        return f"interrupted by {self.signal_name}" + (f": {self.progress}" if self.progress else "")


def interruption_in(exc: BaseException) -> Interrupted | None:
    """The :class:`Interrupted` that ``exc`` is or was caused by, else ``None``.

    A signal handler that raises while Ray's C++ core waits (``ray.wait``, ``ray.get``)
    surfaces as ``SystemError: ... returned a result with an exception set``, with the
    :class:`Interrupted` as its ``__cause__`` or ``__context__``.
    """
    return in_chain(exc, Interrupted)


def _raise_interrupted(signum: int, frame: object) -> None:
    # Once only: a second Ctrl-C during the cleanup gets Python's default (KeyboardInterrupt).
    signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    raise Interrupted(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread.

    The previous handlers come back on exit (the CLI runs in-process in the tests). Outside
    the main thread, where handlers cannot be set, it does nothing.
    """
    if not _main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    for s in _SIGNALS:
        signal.signal(s, _raise_interrupted)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def keep_handlers() -> Iterator[None]:
    """Restore fovea-ray's signal handlers after the block (``ray.init`` replaces SIGTERM's)."""
    if not _main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is _raise_interrupted:
                signal.signal(s, handler)
