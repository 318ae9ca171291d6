"""``fovea-ray train``: fine-tune Mask R-CNN on foveated COCO with Ray Train."""

from __future__ import annotations

from fovea_ray.errors import FoveaRayError


def train() -> None:
    """fine-tune Mask R-CNN on foveated COCO with Ray Train."""
    raise FoveaRayError("`fovea-ray train` is not built yet (issue #8)")
