"""Connecting to Ray: a running cluster when one is named, else a local one.

Ray appears only at the edges of fovea-ray (extraction and the fan-out of statistics);
this module is the one place that decides how to connect.
"""

from __future__ import annotations

import os


def connect(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True) -> None:
    """Make sure this process is connected to Ray.

    Args:
        address: a cluster address (``ray://host:10001``, ``host:6379`` or ``auto``).
            ``None`` uses ``RAY_ADDRESS`` when set, else starts a local Ray.
        num_cpus: CPUs for a local Ray (ignored when connecting to a cluster).
        quiet: keep Ray's start-up logging down.

    Reuses an existing connection (a test fixture, a Ray Job driver) untouched.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"ignore_reinit_error": True}
    if quiet:
        kwargs["logging_level"] = "ERROR"
        kwargs["log_to_driver"] = True
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)


def probe(address: str | None) -> str:
    """Describe whether a Ray cluster is reachable at ``address`` without starting one."""
    if not address:
        return "none given (a local Ray starts on demand; set --address or RAY_ADDRESS for a cluster)"
    import ray

    from fovea_ray.errors import one_line

    try:
        ray.init(address=address, logging_level="ERROR", ignore_reinit_error=True)
        res = ray.cluster_resources()
        ray.shutdown()
        return f"reachable at {address}: {res.get('CPU', 0):.0f} CPUs, {res.get('GPU', 0):.0f} GPUs"
    except Exception as exc:  # noqa: BLE001 - report, never fail `info`
        return f"not reachable at {address} ({type(exc).__name__}: {one_line(exc, 200)})"
