"""The network: torchvision Mask R-CNN (ResNet-101/50 FPN) built for a fixed canvas.

- :func:`build_model` builds it (random seeded weights, a checkpoint, or torchvision's).
- :func:`load_checkpoint` / :func:`resolve_checkpoint` read checkpoints safely.
- :func:`weights_checksum` fingerprints the weights (sha256).
- :mod:`fovea_ray.model.convert` converts maskrcnn-benchmark / detectron2 R101-FPN models.
"""

from fovea_ray.model.build import ARCHS, CanvasTransform, build_model
from fovea_ray.model.weights import load_checkpoint, resolve_checkpoint, weights_checksum

__all__ = ["ARCHS", "CanvasTransform", "build_model", "load_checkpoint", "resolve_checkpoint", "weights_checksum"]
