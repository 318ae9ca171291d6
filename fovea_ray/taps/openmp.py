"""Run compiled work inside torch's own OpenMP thread team.

torch's CPU operators run in an OpenMP team (GNU libgomp in the Linux wheels). After each
parallel region the team's idle threads spin for a while before they sleep (libgomp's
default ``GOMP_SPINCOUNT``), so work that a hook hands to a second pool of threads
between two operators competes with them for the cores: on the 2-core development machine
that cost the classifier taps about a third of their time (``benchmarks/README.md``).
Handing the work to the same team instead, through libgomp's ``GOMP_parallel`` (the entry
point of every ``#pragma omp parallel``), uses the threads that are already awake and
leaves nobody spinning.

:func:`team` finds the libgomp that torch has loaded (from ``/proc/self/maps``); where
there is none (macOS, Windows, a torch built with another OpenMP) it returns None and the
callers use a thread pool instead. The function run in the team must be a C callback that
needs no GIL (a numba ``cfunc``): ``ctypes`` releases the GIL for the call.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

__all__ = ["Team", "team"]


@dataclass(frozen=True)
class Team:
    """torch's libgomp: ``run(fn, data, threads)`` calls the C function ``fn(data)`` on
    ``threads`` threads of the calling thread's team and returns when all are done."""

    path: str
    _parallel: ctypes._CFuncPtr

    def run(self, fn: int, data: int, threads: int) -> None:
        self._parallel(ctypes.c_void_p(fn), ctypes.c_void_p(data), ctypes.c_uint(threads), ctypes.c_uint(0))


_TEAM: Team | None | bool = False  # False: not looked up yet


def _loaded_libgomp() -> str | None:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line and "/" in line}
    except OSError:
        return None
    if not paths:
        return None
    import torch

    torch_dir = os.path.dirname(torch.__file__)
    return min(paths, key=lambda p: (not p.startswith(torch_dir), p))  # torch's own first


def team() -> Team | None:
    """torch's OpenMP team, or None where torch does not run on libgomp (looked up once;
    ``FOVEA_RAY_OPENMP_TEAM=0`` turns it off)."""
    global _TEAM
    if _TEAM is False:
        _TEAM = None
        path = _loaded_libgomp() if os.environ.get("FOVEA_RAY_OPENMP_TEAM", "1") != "0" else None
        if path is not None:
            try:
                parallel = ctypes.CDLL(path).GOMP_parallel
            except (OSError, AttributeError):
                parallel = None
            if parallel is not None:
                parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                parallel.restype = None
                _TEAM = Team(path, parallel)
    return _TEAM
