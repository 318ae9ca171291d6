"""``fovea-ray report``: render figures and a self-contained report.html from results.json."""

from __future__ import annotations

from fovea_ray.errors import FoveaRayError


def report() -> None:
    """render figures and a self-contained report.html from results.json."""
    raise FoveaRayError("`fovea-ray report` is not built yet (issue #7)")
