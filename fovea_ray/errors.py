"""Errors that the CLI shows as one line, without a traceback."""

from __future__ import annotations


class FoveaRayError(Exception):
    """A problem the user can fix (bad input file, bad option, missing data).

    The CLI prints ``fovea-ray: error: <message>`` and exits with status 2; ``--debug``
    shows the traceback. Messages should name the file and the problem.
    """


class InputError(FoveaRayError, ValueError):
    """An input file or value is unreadable or invalid."""
