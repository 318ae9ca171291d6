"""Can the connected cluster run the extraction's plan? Checked before any work starts.

Three ways a run could otherwise wait for ever, or write where nobody reads:

- the plan asks for more than the cluster has: GPU actors on a CPU-only Ray, an actor
  larger than any node, or no room beside the model actors for the read and sink tasks;
- the cluster shrinks mid-run (a lost node) until the actors hold every CPU, so read and
  sink tasks can never be scheduled: :func:`actor_cpus_cap` keeps half a CPU free on the
  largest node, and :func:`watch_stalls` says what the run is waiting for when no chunk
  has been stored for ``stall_timeout`` seconds;
- a local ``--out`` on a multi-node cluster: sink tasks on other nodes would write to
  their own disks (:func:`check_shared_output`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from fovea_ray.errors import ClusterError, in_chain

__all__ = [
    "DEFAULT_STALL_TIMEOUT",
    "READ_CPUS",
    "SINK_CPUS",
    "Capacity",
    "actor_cpus_cap",
    "check_capacity",
    "check_shared_output",
    "stall_timeout_from_env",
    "waiting_for",
    "watch_stalls",
]

T = TypeVar("T")

#: Logical CPUs of each read task and each sink task (the Ray Data chain's CPU stages).
READ_CPUS = 0.5
SINK_CPUS = 0.5

#: Seconds without a stored chunk before a run stops with a message (the first chunk
#: includes the actors' start and model build, minutes on a cold autoscaling cluster).
DEFAULT_STALL_TIMEOUT = 600.0
STALL_ENV = "FOVEA_RAY_STALL_TIMEOUT"


def stall_timeout_from_env(value: float | None = None) -> float:
    """``value``, else ``$FOVEA_RAY_STALL_TIMEOUT``, else :data:`DEFAULT_STALL_TIMEOUT` (0: never)."""
    if value is not None:
        return float(value)
    text = os.environ.get(STALL_ENV, "")
    if not text:
        return DEFAULT_STALL_TIMEOUT
    try:
        return float(text)
    except ValueError:
        raise ClusterError(f"{STALL_ENV}={text!r}: not a number of seconds") from None


@dataclass(frozen=True)
class Capacity:
    """The connected cluster's totals and its alive nodes' CPUs and GPUs."""

    cpus: float
    gpus: float
    node_cpus: tuple[float, ...]
    node_gpus: tuple[float, ...]

    @classmethod
    def of_cluster(cls) -> Capacity:
        """Read from ``ray.cluster_resources()`` and the alive entries of ``ray.nodes()``."""
        import ray

        res = ray.cluster_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return cls(
            cpus=float(res.get("CPU", 0)),
            gpus=float(res.get("GPU", 0)),
            node_cpus=tuple(float(n["Resources"].get("CPU", 0)) for n in nodes),
            node_gpus=tuple(float(n["Resources"].get("GPU", 0)) for n in nodes),
        )

    @property
    def n_nodes(self) -> int:
        return len(self.node_cpus)

    def describe(self) -> str:
        """``2 nodes: 2 CPUs, 0 GPUs in all (largest node 1 CPU)``."""
        big = max(self.node_cpus, default=0)
        return (
            f"{self.n_nodes} node{'s' if self.n_nodes != 1 else ''}: {self.cpus:g} CPUs, {self.gpus:g} GPUs "
            f"in all (largest node {big:g} CPUs)"
        )


def actor_cpus_cap(node_cpus: tuple[float, ...]) -> float:
    """The most logical CPUs a CPU model actor may hold: half a CPU below the largest node.

    A node running an actor then always has room for one read or one sink task, so even a
    cluster shrunk to that one node makes progress (one task at a time) instead of
    hanging. Torch's thread count is set separately; logical CPUs are Ray's accounting.
    """
    big = max(node_cpus, default=1.0)
    return max(0.25, big - max(READ_CPUS, SINK_CPUS))


def check_capacity(
    cap: Capacity, *, use_gpu: bool, actors: int, actor_cpus: float, wait_for_resources: bool = False
) -> None:
    """Refuse, in one line saying what is missing, a plan the cluster cannot schedule.

    The plan is ``actors`` model actors of ``actor_cpus`` CPUs (and one GPU each with
    ``use_gpu``), plus room for one read or sink task at a time. ``wait_for_resources``
    accepts missing GPUs (an autoscaling cluster adds GPU nodes on demand; the stall
    timeout still bounds the wait).
    """
    gpu_node = max(cap.node_gpus, default=0) >= 1
    if use_gpu and not gpu_node and not wait_for_resources:
        raise ClusterError(
            f"--device cuda: the Ray cluster has no GPU ({cap.describe()}); use --device cpu, or on an "
            "autoscaling cluster that adds GPU nodes on demand pass --wait-for-resources"
        )
    # Read and sink tasks may take turns (one at a time still makes progress).
    need_cpus = actor_cpus * actors + max(READ_CPUS, SINK_CPUS)
    if not use_gpu and actor_cpus > max(cap.node_cpus, default=0):
        raise ClusterError(f"the model actor needs {actor_cpus:g} CPUs and no node has that many ({cap.describe()})")
    if need_cpus > cap.cpus + 1e-9 and not (use_gpu and wait_for_resources):
        raise ClusterError(
            f"the plan needs {need_cpus:g} CPUs ({actors} model actor{'s' if actors != 1 else ''} of "
            f"{actor_cpus:g} CPUs, and room for one {READ_CPUS:g}-CPU read or sink task) but the cluster "
            f"has {cap.describe()}; use fewer --num-actors or a larger cluster"
        )


def check_shared_output(out: str, cap: Capacity, *, shared_path: bool = False, nodes_to_come: bool = False) -> None:
    """Refuse a local ``--out`` on a cluster of more than one node, unless declared shared.

    Sink tasks run on any node and write the chunks they hold: a local path would
    scatter the store over the nodes' own disks. ``nodes_to_come``: the run waits for
    nodes an autoscaler adds (GPU actors on a cluster without GPUs yet), so one node now
    is not one node later.
    """
    if (cap.n_nodes <= 1 and not nodes_to_come) or shared_path or ("://" in out and not out.startswith("file://")):
        return
    nodes = f"has {cap.n_nodes} nodes" if cap.n_nodes > 1 else "will add GPU nodes"
    raise ClusterError(
        f"--out {out}: a local path, but the Ray cluster {nodes} and sink tasks on each "
        "would write to their own disk; use a path on a filesystem every node shares (and pass "
        "--shared-path) or an object store URL (s3://...)"
    )


def waiting_for(cap: Capacity, available: dict, *, use_gpu: bool, actors: int, actor_cpus: float) -> str:
    """What a stalled run waits for, in words (for :func:`watch_stalls`'s message)."""
    free_cpu, free_gpu = float(available.get("CPU", 0)), float(available.get("GPU", 0))
    gpu = " and 1 GPU each" if use_gpu else ""
    want = (
        f"{actors} model actor{'s' if actors != 1 else ''} of {actor_cpus:g} CPUs{gpu}, plus "
        f"{READ_CPUS:g} CPU per read task and {SINK_CPUS:g} per sink task"
    )
    return f"the plan needs {want}; the cluster now has {cap.describe()}, {free_cpu:g} CPUs and {free_gpu:g} GPUs free"


_END = object()


class _Stalled(BaseException):
    """Raised by the stall timer inside a blocked ``next()`` (private to :func:`watch_stalls`)."""


def watch_stalls(items: Iterable[T], timeout: float, explain: Callable[[], str]) -> Iterator[T]:
    """``items``, with :class:`ClusterError` after ``timeout`` seconds without a new item.

    A blocking iterator (Ray Data's ``iter_rows``) cannot be given a timeout itself. In
    the main thread, each ``next()`` runs under a ``SIGALRM`` interval timer armed only
    for that call: when it fires, the iterator is stopped from inside (Ray Data's
    iterator shuts its executor down on any ``BaseException``) and the error says for how
    long and what the run is waiting for (``explain()``). SIGINT and SIGTERM reach the
    same frame, so an interrupt stops the run at once. A timer the caller had armed (for
    example pytest-timeout's) keeps its deadline and handler. Off the main thread, where
    signals cannot be used, a daemon thread drains the iterator into a queue instead.
    With ``timeout`` 0 or less, it waits for ever. An exception of the iterator is
    re-raised here.
    """
    if timeout <= 0:
        yield from items
        return
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield from _drained(items, timeout, explain)
        return
    it = iter(items)
    while True:
        try:
            with _alarm(timeout):
                item = next(it)
        except StopIteration:
            return
        except BaseException as exc:
            if _stalled_in(exc):
                raise ClusterError(_stall_message(timeout, explain)) from None
            raise
        yield item


def _stall_message(timeout: float, explain: Callable[[], str]) -> str:
    return f"no progress: no chunk stored for {timeout:g} s (--stall-timeout / ${STALL_ENV}); {explain()}"


def _stalled_in(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, the stall timer (Ray wraps it in SystemError)."""
    return in_chain(exc, _Stalled) is not None


@contextlib.contextmanager
def _alarm(timeout: float) -> Iterator[None]:
    """Raise :class:`_Stalled` in the block after ``timeout`` s; restore the caller's timer after."""
    previous = signal.getsignal(signal.SIGALRM)
    remaining, interval = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    caller_deadline = start + remaining if remaining > 0 else None
    handed = []

    def fire(signum: int, frame: object) -> None:
        now = time.monotonic()
        if caller_deadline is not None and not handed and now >= caller_deadline and now - start < timeout:
            # The caller's timer came due first: hand it its signal, then keep ours.
            handed.append(now)
            signal.setitimer(signal.ITIMER_REAL, max(start + timeout - now, 1e-3))
            if callable(previous):
                previous(signum, frame)
            return
        raise _Stalled

    signal.signal(signal.SIGALRM, fire)
    first = timeout if caller_deadline is None else min(timeout, remaining)
    signal.setitimer(signal.ITIMER_REAL, max(first, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if caller_deadline is not None and not handed:
            left = caller_deadline - time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), interval)
        elif handed and interval > 0:
            signal.setitimer(signal.ITIMER_REAL, interval, interval)


def _drained(items: Iterable[T], timeout: float, explain: Callable[[], str]) -> Iterator[T]:
    """The off-main-thread form of :func:`watch_stalls`: a daemon thread fills a queue."""
    box: queue.Queue = queue.Queue(maxsize=64)
    stop = threading.Event()

    def pump() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put((item, None), timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            box.put((_END, exc))
            return
        box.put((_END, None))

    threading.Thread(target=pump, name="fovea-ray-drain", daemon=True).start()
    try:
        while True:
            try:
                item, exc = box.get(timeout=timeout)
            except queue.Empty:
                raise ClusterError(_stall_message(timeout, explain)) from None
            if exc is not None:
                raise exc
            if item is _END:
                return
            yield item
    finally:
        stop.set()
