"""The networks: the study's Mask R-CNN and any other vision network, by one model spec.

- :func:`build_model` builds every kind: Mask R-CNN (ResNet-101/50 FPN, for a fixed
  canvas), torchvision and timm classifiers, a user's ``module:function``.
- :func:`parse_model` / :func:`parse_network` read ``MODEL@WEIGHTS`` and
  ``NAME=MODEL@WEIGHTS`` (:mod:`fovea_ray.model.spec`, torch-free).
- :func:`load_checkpoint` / :func:`resolve_checkpoint` read checkpoints safely.
- :func:`weights_checksum` fingerprints the weights (sha256).
- :mod:`fovea_ray.model.convert` converts maskrcnn-benchmark / detectron2 R101-FPN models.
"""

from __future__ import annotations

import importlib
from typing import Any

from fovea_ray.model.spec import DEFAULT_MODEL, DETECTION_MODELS, ModelRef, NetworkRef, parse_model, parse_network

# Everything else imports torch: loaded on first use, so that the driver can parse model
# specs (``fovea_ray.model.spec``) without torch.
_LAZY = {
    "ARCHS": "build",
    "DETECTION_DEFAULT_LAYERS": "build",
    "CanvasTransform": "build",
    "build_model": "build",
    "load_checkpoint": "weights",
    "resolve_checkpoint": "weights",
    "weights_checksum": "weights",
    "InputSpec": "zoo",
    "default_layer": "zoo",
}

__all__ = [
    "DEFAULT_MODEL",
    "DETECTION_MODELS",
    "ModelRef",
    "NetworkRef",
    "parse_model",
    "parse_network",
    "ARCHS",
    "DETECTION_DEFAULT_LAYERS",
    "CanvasTransform",
    "build_model",
    "load_checkpoint",
    "resolve_checkpoint",
    "weights_checksum",
    "InputSpec",
    "default_layer",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"fovea_ray.model.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'fovea_ray.model' has no attribute {name!r}")
