"""The networks: the study's Mask R-CNN and any other vision network, by one model spec.

- :func:`build_model` builds every kind: Mask R-CNN (ResNet-101/50 FPN, for a fixed
  canvas), torchvision and timm classifiers, a user's ``module:function``.
- :func:`parse_model` / :func:`parse_network` read ``MODEL@WEIGHTS`` and
  ``NAME=MODEL@WEIGHTS`` (:mod:`fovea_ray.model.spec`, torch-free).
- :func:`load_checkpoint` / :func:`resolve_checkpoint` read checkpoints safely.
- :func:`weights_checksum` fingerprints the weights (sha256).
- :mod:`fovea_ray.model.convert` converts maskrcnn-benchmark / detectron2 R101-FPN models.
"""

from fovea_ray.model.build import ARCHS, DETECTION_DEFAULT_LAYERS, CanvasTransform, build_model
from fovea_ray.model.spec import DEFAULT_MODEL, DETECTION_MODELS, ModelRef, NetworkRef, parse_model, parse_network
from fovea_ray.model.weights import load_checkpoint, resolve_checkpoint, weights_checksum
from fovea_ray.model.zoo import InputSpec, default_layer

__all__ = [
    "ARCHS",
    "DEFAULT_MODEL",
    "DETECTION_DEFAULT_LAYERS",
    "DETECTION_MODELS",
    "CanvasTransform",
    "InputSpec",
    "ModelRef",
    "NetworkRef",
    "build_model",
    "default_layer",
    "load_checkpoint",
    "parse_model",
    "parse_network",
    "resolve_checkpoint",
    "weights_checksum",
]
