"""``fovea-ray extract``: run the Ray Data extraction pipeline into a Zarr activation store."""

from __future__ import annotations

from fovea_ray.errors import FoveaRayError


def extract() -> None:
    """run the Ray Data extraction pipeline into a Zarr activation store."""
    raise FoveaRayError("`fovea-ray extract` is not built yet (issue #5)")
