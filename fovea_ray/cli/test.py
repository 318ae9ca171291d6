"""``fovea-ray test``: run the classifier two-sample tests on a store."""

from __future__ import annotations

from fovea_ray.errors import FoveaRayError


def test() -> None:
    """run the classifier two-sample tests on a store."""
    raise FoveaRayError("`fovea-ray test` is not built yet (issue #6)")
