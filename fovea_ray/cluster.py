"""Connecting to Ray: a running cluster when one is named, else a local one.

Ray appears only at the edges of fovea-ray (extraction and the fan-out of statistics);
this module is the one place that decides how to connect.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fovea_ray.errors import FoveaRayError

__all__ = ["ClusterError", "Execution", "RayExecutor", "connect", "fan_out", "probe", "resolve_address"]


def resolve_address(address: str | None) -> str | None:
    """The cluster address a run joins: ``address``, else ``RAY_ADDRESS``, else ``None`` (a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True) -> None:
    """Make sure this process is connected to Ray.

    Parameters
    ----------
    address : str or None, optional
        a cluster address (``ray://host:10001``, ``host:6379`` or ``auto``).
        ``None`` uses ``RAY_ADDRESS`` when set, else starts a new local Ray
        (``ray.init(address="local")``): a cluster left running by ``ray start`` on this
        machine is not joined unless it is named.
    num_cpus : int or None, optional
        CPUs for a local Ray (ignored when connecting to a cluster).
    quiet : bool, optional
        keep Ray's start-up logging down.

    Raises
    ------
    ClusterError
        The cluster could not be joined (one line; with a hint when Ray's token
        authentication refused the connection).

    Notes
    -----
    Reuses an existing connection (a test fixture, a Ray Job driver) untouched. This is
    the one place fovea-ray calls ``ray.init`` for a run; the CLI's SIGINT/SIGTERM
    handlers are kept across it (:func:`fovea_ray.interrupts.keep_handlers`).
    """
    import ray

    from fovea_ray.interrupts import keep_handlers

    if ray.is_initialized():
        return
    address = resolve_address(address)
    kwargs: dict = {"ignore_reinit_error": True}
    if quiet:
        kwargs["logging_level"] = "ERROR"
        kwargs["log_to_driver"] = True
    try:
        with keep_handlers():
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
        raise ClusterError(connection_failure(address or "a local Ray", exc)) from exc


class ClusterError(FoveaRayError):
    """A Ray cluster could not be joined or started."""


#: Words in Ray's errors (and their causes) when token authentication refuses a client.
_AUTH_MARKERS = ("AuthenticationError", "InvalidAuthToken", "Unauthenticated", "token is missing or incorrect")


def connection_failure(address: str, exc: BaseException) -> str:
    """One line for a failed ``ray.init``; names token authentication when that is the cause.

    Ray 2.60 reports a token-mode cluster refusing a client without a token as a bare
    ``ConnectionError("Failed to connect to Ray cluster at ...")`` whose cause's text holds
    ``AuthenticationError: ... InvalidAuthToken``; the whole chain is searched for it.
    """
    from fovea_ray.errors import one_line

    chain, seen = [], exc
    for _ in range(8):
        if seen is None or seen in chain:
            break
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    line = f"cannot connect to Ray at {address}: {one_line(exc, 300)}"
    if any(m in text for m in _AUTH_MARKERS):
        mode = os.environ.get("RAY_AUTH_MODE", "") or "unset"
        line += (
            f" -- the cluster uses token authentication (RAY_AUTH_MODE is {mode} here): set "
            "RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH "
            "(default ~/.ray/auth_token; `ray get-auth-token` on the head node prints it)"
        )
    return line


def probe(address: str | None) -> str:
    """Describe whether a Ray cluster is reachable at ``address`` without starting one."""
    if not address:
        return "none given (a local Ray starts on demand; set --address or RAY_ADDRESS for a cluster)"
    import ray

    try:
        ray.init(address=address, logging_level="ERROR", ignore_reinit_error=True)
        res = ray.cluster_resources()
        ray.shutdown()
        return f"reachable at {address}: {res.get('CPU', 0):.0f} CPUs, {res.get('GPU', 0):.0f} GPUs"
    except Exception as exc:  # noqa: BLE001 - report, never fail `info`
        return f"not reachable ({connection_failure(address, exc)})"


def _run_item(fn: Callable, item: Any) -> Any:
    """One fanned-out item in a Ray worker: torch gets the task's CPUs as threads."""
    _set_threads_from_ray()
    return fn(item)


def _set_threads_from_ray() -> None:
    try:
        import ray
        import torch

        if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
            return  # outside a Ray worker, leave torch alone (and never start Ray by asking)
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(round(cpus))))
    except Exception:  # noqa: BLE001 - leave torch's setting alone
        pass


def fan_out(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_in_flight: int | None = None,
    retries: int = 3,
    progress: bool = False,
    desc: str = "tasks",
) -> Iterator[Any]:
    """``fn(item)`` for every item as Ray tasks; results in the order of ``items``.

    The one place fovea-ray's statistics meet Ray. ``fn`` (with whatever it binds, e.g.
    a design matrix in a :func:`functools.partial`) goes into the object store once.
    At most ``max_in_flight`` tasks run at a time (None: all submitted at once); a task
    whose worker dies is retried up to ``retries`` times (Ray's ``max_retries``), which
    is safe because every item is deterministic given its index.

    Parameters
    ----------
    fn : callable
        A picklable function of one item.
    items : iterable
        The items (small: indices, names).
    address : str, optional
        Ray cluster (:func:`connect`).
    num_cpus, num_gpus : float
        Resources of each task.
    max_in_flight : int, optional
        Back-pressure bound.
    retries : int
        Retries per task after a worker failure.
    progress : bool
        A progress bar on stderr, labelled ``desc``.

    Returns
    -------
    iterator
        ``fn(item)`` in the order of ``items``.
    """
    import ray

    from fovea_ray.stats._progress import Progress

    connect(address)
    items = list(items)
    fn_ref = ray.put(fn)
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries)(_run_item)
    limit = max_in_flight or len(items) or 1
    bar = Progress(len(items), desc, unit="tasks", enabled=progress)
    done: dict[int, Any] = {}
    inflight: dict = {}
    nxt_submit = nxt_yield = 0
    while nxt_yield < len(items):
        while nxt_submit < len(items) and len(inflight) < limit:
            inflight[remote.remote(fn_ref, items[nxt_submit])] = nxt_submit
            nxt_submit += 1
        ready, _ = ray.wait(list(inflight), num_returns=1)
        for ref in ready:
            done[inflight.pop(ref)] = ray.get(ref)
            bar.update()
        while nxt_yield in done:
            yield done.pop(nxt_yield)
            nxt_yield += 1
    bar.close()


class RayExecutor:
    """An executor (:mod:`fovea_ray.stats.executor`) that runs items as Ray tasks via
    :func:`fan_out`; ``RayExecutor(address, num_gpus=1)`` asks for one GPU per task."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_in_flight: int | None = None,
        retries: int = 3,
        progress: bool = False,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.progress = progress

    def __call__(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        inner = getattr(fn, "func", fn)
        desc = getattr(inner, "__name__", "tasks").strip("_").replace("_", " ")
        return fan_out(
            fn,
            items,
            address=self.address,
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_in_flight=self.max_in_flight,
            retries=self.retries,
            progress=self.progress,
            desc=desc,
        )


@dataclass(frozen=True)
class Execution:
    """Where a statistics run executes (the execution half of a battery's settings).

    ``use_ray``: fan layers and permutation groups out as Ray tasks on ``address``
    (None: ``RAY_ADDRESS`` or a local Ray), at most ``max_in_flight`` at a time;
    otherwise run them in this process. ``device``: ``"cpu"`` or ``"cuda"`` for the
    batched solver and the MMD kernel (Ray tasks then ask for one GPU each).
    ``progress``: progress bars on stderr. Nothing here changes a result.
    """

    use_ray: bool = True
    address: str | None = None
    max_in_flight: int | None = None
    device: str = "cpu"
    progress: bool = False

    def check_device(self) -> None:
        """Refuse ``device="cuda"`` where no GPU can run it (one line), instead of waiting or
        silently computing elsewhere: in this process, torch must see CUDA; on Ray, the
        cluster must have a GPU (tasks asking for one would never be scheduled)."""
        from fovea_ray.errors import ClusterError

        if not str(self.device).startswith("cuda"):
            return
        if not self.use_ray:
            import torch

            if not torch.cuda.is_available():
                raise ClusterError("--device cuda --local: torch sees no CUDA device in this process; use --device cpu")
            return
        import ray

        connect(self.address)
        res = ray.cluster_resources()
        if float(res.get("GPU", 0)) < 1:
            raise ClusterError(
                f"--device cuda: the Ray cluster has no GPU ({res.get('CPU', 0):g} CPUs, 0 GPUs); "
                "its tasks would never start: use --device cpu"
            )

    def executor(self):
        """The :mod:`fovea_ray.stats.executor` executor these settings describe."""
        if not self.use_ray:
            from fovea_ray.stats.executor import InProcess

            return InProcess(progress=self.progress)
        gpus = 1 if str(self.device).startswith("cuda") else 0
        return RayExecutor(self.address, num_gpus=gpus, max_in_flight=self.max_in_flight, progress=self.progress)

    def to_record(self) -> dict:
        return {"backend": "ray" if self.use_ray else "local", "address": self.address, "device": self.device}
