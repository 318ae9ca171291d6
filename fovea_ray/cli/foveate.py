"""``fovea-ray foveate``: foveate one image at a fixation and write it as PNG."""

from __future__ import annotations

from fovea_ray.errors import FoveaRayError


def foveate() -> None:
    """foveate one image at a fixation and write it as PNG."""
    raise FoveaRayError("`fovea-ray foveate` is not built yet (issue #2)")
