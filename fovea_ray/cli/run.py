"""``fovea-ray run``: prepare, extract, test and report in one command (no arguments: the embedded demo)."""

from __future__ import annotations

from fovea_ray.errors import FoveaRayError


def run() -> None:
    """prepare, extract, test and report in one command (no arguments: the embedded demo)."""
    raise FoveaRayError("`fovea-ray run` is not built yet (issue #7)")
