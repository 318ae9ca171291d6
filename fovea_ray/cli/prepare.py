"""``fovea-ray prepare``: build the type-1/type-0 sample manifest from COCO annotations."""

from __future__ import annotations

from fovea_ray.errors import FoveaRayError


def prepare() -> None:
    """build the type-1/type-0 sample manifest from COCO annotations."""
    raise FoveaRayError("`fovea-ray prepare` is not built yet (issue #3)")
