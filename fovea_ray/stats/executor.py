"""Where parallel statistics run: one small, ``map``-like executor interface.

A statistics function never decides where its independent pieces run (the groups of the
full permutation test, the layers of a sweep). It takes an ``executor``: any callable
``executor(fn, items)`` that returns an iterator of ``fn(item)`` **in the order of**
``items``, like the built-in :func:`map`. The default, :func:`in_process`, is exactly
that; :class:`fovea_ray.cluster.RayExecutor` fans the items out as Ray tasks. Every
piece draws its random numbers from streams keyed by purpose and index
(:mod:`fovea_ray.stats._seeding`), so results are identical for any executor and any
number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from fovea_ray.stats._progress import Progress

__all__ = ["Executor", "InProcess", "executor_name", "in_process"]

T = TypeVar("T")
#: ``executor(fn, items) -> iterator of fn(item)``, in the order of ``items``.
Executor = Callable[[Callable[[Any], T], Iterable[Any]], Iterator[T]]


def in_process(fn: Callable[[Any], T], items: Iterable[Any]) -> Iterator[T]:
    """The default executor: ``map(fn, items)`` in this process."""
    return map(fn, items)


in_process.name = "local"  # type: ignore[attr-defined]


class InProcess:
    """:func:`in_process` with a progress bar on stderr (``desc``: the bar's label)."""

    name = "local"

    def __init__(self, *, progress: bool = True, desc: str | None = None) -> None:
        self.progress = progress
        self.desc = desc

    def __call__(self, fn: Callable[[Any], T], items: Iterable[Any]) -> Iterator[T]:
        items = list(items)
        bar = Progress(len(items), self.desc or _label(fn), unit="tasks", enabled=self.progress)
        for item in items:
            yield fn(item)
            bar.update()
        bar.close()


def executor_name(executor: Executor | None) -> str:
    """``"local"``, ``"ray"`` or the executor's type name (recorded in results)."""
    if executor is None:
        return "local"
    return str(getattr(executor, "name", type(executor).__name__))


def _label(fn: Callable) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    return getattr(inner, "__name__", "tasks").strip("_").replace("_", " ")
