"""Errors that the CLI shows as one line, without a traceback."""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class FoveaRayError(Exception):
    """A problem the user can fix (bad input file, bad option, missing data).

    The CLI prints ``fovea-ray: error: <message>`` and exits with status 2; ``--debug``
    shows the traceback. Messages should name the file and the problem.
    """


class InputError(FoveaRayError, ValueError):
    """An input file or value is unreadable or invalid."""


class DamagedStoreError(FoveaRayError):
    """A store's chunk is missing or fails its checksum (the message names it and the repair)."""


class ClusterError(FoveaRayError):
    """The Ray cluster cannot run the plan (missing resources, no progress, unshared storage)."""


def root_cause(exc: BaseException) -> BaseException:
    """The user's exception inside a Ray task error (so its one-line message reaches the CLI).

    Ray wraps an exception raised in a task or actor in a ``RayTaskError`` whose ``cause``
    is the original; wrappers may nest (a Ray Data operator around a task).
    """
    seen = exc
    for _ in range(8):
        cause = getattr(seen, "cause", None) or seen.__cause__
        if cause is None or cause is seen:
            break
        seen = cause
    return seen


def in_chain(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of type ``kind`` among ``exc`` and its causes, else ``None``.

    Follows ``__cause__``, else ``__context__``: an exception raised by a signal handler
    while Ray's C++ core waits surfaces as ``SystemError: ... returned a result with an
    exception set``, with the handler's exception as its context.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, kind):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def one_line(message: object, limit: int = 2000) -> str:
    """``message`` with its whitespace collapsed to single spaces, cut to ``limit`` characters.

    Parameters
    ----------
    message : object
        A string or an exception; an exception with an empty message gives its type's name.
    limit : int
        Most characters returned; a longer text ends in ``...``.

    Returns
    -------
    str
        One line for a terminal, a log or the store's ``samples/error`` column.
    """
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def disk_full(exc: BaseException) -> str | None:
    """One line for a "no space left on device" (ENOSPC) anywhere in ``exc``'s chain, else None.

    A sink task that hits a full disk reaches the driver as a Ray task error whose text is
    a flattened traceback (2000 characters, the ENOSPC cut off by :func:`one_line`); this
    finds the ``OSError`` in the chain (``__cause__``, ``__context__``, Ray's ``cause``), or
    its ``[Errno 28] ...: 'PATH'`` in the text, and names the path.
    """
    import errno
    import re

    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen) or len(seen) > 32:
            continue
        seen.append(e)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            where = e.filename or e.filename2
            return f"{where or 'the output'}: no space left on device (free some space there, or write elsewhere)"
        todo.extend([e.__cause__, e.__context__, getattr(e, "cause", None)])
    for e in seen:
        match = re.search(r"\[Errno 28\] No space left on device(?:: '([^']*)')?", str(e))
        if match:
            where = match.group(1) or "the output"
            return f"{where}: no space left on device (free some space there, or write elsewhere)"
    return None
