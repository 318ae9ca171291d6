"""Errors that the CLI shows as one line, without a traceback."""

from __future__ import annotations


class FoveaRayError(Exception):
    """A problem the user can fix (bad input file, bad option, missing data).

    The CLI prints ``fovea-ray: error: <message>`` and exits with status 2; ``--debug``
    shows the traceback. Messages should name the file and the problem.
    """


class InputError(FoveaRayError, ValueError):
    """An input file or value is unreadable or invalid."""


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
