"""Model specs: the one grammar for ``--model``, ``--weights`` and ``--network`` (torch-free).

A *model* names a network:

``maskrcnn_resnet101_fpn`` / ``maskrcnn_resnet50_fpn``
    torchvision Mask R-CNN on a ResNet FPN backbone (the study's detector; the default).
    ``--arch resnet101`` keeps meaning ``maskrcnn_resnet101_fpn``.
``resnet50``, ``convnext_tiny``, ``vit_b_16``, ``efficientnet_b0``, ...
    any torchvision classification model (``torchvision.models.get_model``).
``timm:NAME``
    a timm model (``timm.create_model``), when timm is installed (``pip install fovea-ray[timm]``).
``package.module:function``
    a user's factory, called with no arguments, that returns an ``nn.Module``.

*Weights* follow an ``@``: ``MODEL@WEIGHTS``. They are ``none`` (random, seeded), a
torchvision weight enum name (``DEFAULT``, ``IMAGENET1K_V2``, ...), ``torchvision`` (the
detector's COCO weights), ``pretrained`` (timm's published weights), or a path: a state
dict, a ``fovea-ray train`` / ``fovea-ray pretrain`` folder. The model part never holds an
``@``, so the weights may (a path such as ``runs/a@b/``).

A *network* is ``NAME=MODEL@WEIGHTS`` (``coco=maskrcnn_resnet50_fpn@torchvision``) or
``NAME=WEIGHTS`` (the default model with those weights, as in ``--network trained=runs/a``).
``NAME`` becomes a file name (``stores/NAME.zarr``), so it is letters, digits, ``_``, ``-``
and ``.``, starting with a letter or digit.

This module only parses; :func:`fovea_ray.model.build_model` builds, and reports unknown
names with the nearest known ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MODEL",
    "DETECTION_MODELS",
    "NETWORK_NAME_RULE",
    "ModelRef",
    "NetworkRef",
    "model_from_arch",
    "parse_model",
    "parse_network",
    "valid_network_name",
]

#: Detection model name -> the ResNet backbone (the ``arch`` of ``build_model(arch=...)``).
DETECTION_MODELS: dict[str, str] = {"maskrcnn_resnet101_fpn": "resnet101", "maskrcnn_resnet50_fpn": "resnet50"}
#: The study's network.
DEFAULT_MODEL = "maskrcnn_resnet101_fpn"

KINDS = ("detection", "torchvision", "timm", "factory")
_PY_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_FACTORY = re.compile(rf"^{_PY_NAME}(?:\.{_PY_NAME})*:{_PY_NAME}(?:\.{_PY_NAME})*$")
_TORCHVISION = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model spec.

    Attributes
    ----------
    kind : str
        ``"detection"``, ``"torchvision"``, ``"timm"`` or ``"factory"``.
    name : str
        The canonical model name: ``maskrcnn_resnet101_fpn``, ``resnet50``, ``timm:resnet18``,
        ``mypkg.nets:small``.
    weights : str or None
        The weights part after ``@`` as written (``None``: not given, the caller's default).
    """

    kind: str
    name: str
    weights: str | None = None

    @property
    def arch(self) -> str | None:
        """The ResNet backbone of a detection model (``resnet101``), else None."""
        return DETECTION_MODELS.get(self.name)

    @property
    def target(self) -> str:
        """What the builder looks up: the timm name without ``timm:``, else :attr:`name`."""
        return self.name[len("timm:") :] if self.kind == "timm" else self.name

    def with_weights(self, weights: str | None) -> ModelRef:
        """The same model with other weights."""
        return ModelRef(self.kind, self.name, weights)

    def __str__(self) -> str:
        return self.name if self.weights is None else f"{self.name}@{self.weights}"


@dataclass(frozen=True)
class NetworkRef:
    """A named network: ``NAME=MODEL@WEIGHTS`` (``model`` carries the weights)."""

    name: str
    model: ModelRef

    def __str__(self) -> str:
        return f"{self.name}={self.model}"


#: What a network name may hold (it names the store file).
NETWORK_NAME_RULE = "use letters, digits, '_', '-' or '.', starting with a letter or digit (it names the store file)"


def valid_network_name(name: str) -> bool:
    """Whether ``name`` can name a network (and its ``stores/NAME.zarr``)."""
    return bool(_NETWORK_NAME.match(name))


def model_from_arch(arch: str) -> str:
    """``--arch resnet101`` -> ``maskrcnn_resnet101_fpn`` (``ValueError`` for another arch)."""
    name = f"maskrcnn_{arch}_fpn"
    if name not in DETECTION_MODELS:
        backbones = ", ".join(DETECTION_MODELS.values())
        raise ValueError(f"unknown arch {arch!r}; choose one of {backbones} (any other network: --model NAME)")
    return name


def _kind_of(model: str, text: str) -> str:
    if model in DETECTION_MODELS:
        return "detection"
    if model.startswith("timm:"):
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", model[len("timm:") :]):
            raise ValueError(f"bad timm model in {text!r}: write timm:NAME, e.g. timm:resnet18")
        return "timm"
    if ":" in model:
        if not _FACTORY.match(model):
            raise ValueError(f"bad factory in {text!r}: write package.module:function")
        return "factory"
    if not _TORCHVISION.match(model):
        raise ValueError(
            f"bad model name {text!r}: a torchvision name (resnet50), timm:NAME or package.module:function"
        )
    return "torchvision"


def parse_model(text: str, weights: str | None = None) -> ModelRef:
    """Parse ``MODEL`` or ``MODEL@WEIGHTS``; ``weights`` is used when the spec has none.

    Raises ``ValueError`` with a one-line message for a malformed spec. Whether a
    torchvision or timm name exists is checked when the model is built.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty model spec: give a model name such as resnet50 or maskrcnn_resnet101_fpn")
    text = text.strip()
    model, at, given = text.partition("@")
    model = model.strip()
    if at:
        given = given.strip()
        if not given:
            raise ValueError(f"no weights after '@' in {text!r} (e.g. {model}@none)")
        weights = given
    if not model:
        raise ValueError(f"no model before '@' in {text!r}")
    return ModelRef(_kind_of(model, text), model, weights)


def parse_network(text: str, default_model: str = DEFAULT_MODEL) -> NetworkRef:
    """Parse ``NAME=MODEL@WEIGHTS`` or ``NAME=WEIGHTS`` (the latter on ``default_model``).

    Without an ``@`` the right-hand side is the weights (a keyword or a path), as in
    ``--network trained=runs/foveated``; a model with its default weights is written
    ``NAME=MODEL@none`` (or another weights spec), so the two readings never collide.
    """
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"bad network {text!r}: write NAME=MODEL@WEIGHTS or NAME=WEIGHTS")
    name, _, rhs = text.partition("=")
    name, rhs = name.strip(), rhs.strip()
    if not valid_network_name(name):
        raise ValueError(f"bad network name {name!r} in {text!r}: {NETWORK_NAME_RULE}")
    if not rhs:
        raise ValueError(f"nothing after '=' in {text!r}: write NAME=MODEL@WEIGHTS or NAME=WEIGHTS")
    if "@" in rhs:
        return NetworkRef(name, parse_model(rhs))
    return NetworkRef(name, parse_model(default_model, weights=rhs))
