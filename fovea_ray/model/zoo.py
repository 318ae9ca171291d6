"""Any vision network that is not the study's detector: torchvision, timm, a user's factory.

:func:`build_network` builds a :class:`~fovea_ray.model.spec.ModelRef` of kind
``torchvision``, ``timm`` or ``factory`` as a plain ``nn.Module`` (module names as the
library defines them, so ``layer3.3`` of a torchvision ResNet-50 is the same here), in
eval mode, with ``model.fovea_ray_info`` describing it:

``input``
    how the foveated canvas becomes the network's input (:class:`InputSpec`): resized as a
    whole to ``size`` (never cropped: the canvas is the stimulus, and a centre crop would
    cut the periphery) and normalised with ``mean``/``std``. From the weights where they
    say: a torchvision weight enum's ``transforms()`` (its ``crop_size``, mean, std and
    interpolation), timm's ``pretrained_cfg``, a ``fovea-ray pretrain`` folder's
    ``meta.json``. Otherwise ImageNet's mean and std, and the model's own input size
    (a torchvision ViT's ``image_size``) or :data:`DEFAULT_INPUT_SIZE`.
``prefix_tokens``, ``patch_tokens``
    how many leading tokens of a transformer's (B, N, C) maps are not patches (the class
    token: 1 for torchvision's ViT; timm's ``num_prefix_tokens``, which also counts
    register tokens; 0 otherwise), and how many are patches (None: unknown). The taps
    leave the prefix out of maps that hold both (N = prefix + patches).
``default_layer``
    the family's documented layer at about half depth (:func:`default_layer`).
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fovea_ray.errors import FoveaRayError, InputError
from fovea_ray.model.spec import ModelRef

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InputSpec",
    "block_patterns",
    "build_network",
    "default_layer",
    "patch_tokens",
    "prefix_tokens",
]

#: Input side (pixels) of a classifier whose weights do not say (ImageNet's evaluation size).
DEFAULT_INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Weights keywords that mean "random, seeded".
_RANDOM = ("", "none", "random")


@dataclass(frozen=True)
class InputSpec:
    """How the (B, 3, H, W) canvas in [0, 1] becomes the network's input.

    Attributes
    ----------
    size : tuple of int
        (height, width) the whole canvas is resized to.
    mean, std : tuple of float
        Per-channel normalisation, RGB, for inputs in [0, 1].
    interpolation : str
        ``"bilinear"`` or ``"bicubic"`` (with antialiasing when shrinking).
    source : str
        Where these values come from (the weights enum, timm's config, a default).
    """

    size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    source: str = "default"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputSpec:
        """The inverse of :meth:`to_dict`."""
        return cls(
            tuple(int(v) for v in d["size"]),
            tuple(float(v) for v in d.get("mean", IMAGENET_MEAN)),
            tuple(float(v) for v in d.get("std", IMAGENET_STD)),
            str(d.get("interpolation", "bilinear")),
            str(d.get("source", "default")),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["size"], d["mean"], d["std"] = list(self.size), list(self.mean), list(self.std)
        return d

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Resize and normalise a (B, 3, H, W) float batch on its device."""
        if tuple(images.shape[-2:]) != tuple(self.size):
            images = torch.nn.functional.interpolate(
                images, size=tuple(self.size), mode=self.interpolation, align_corners=False, antialias=True
            )
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device)[:, None, None]
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device)[:, None, None]
        return (images - mean) / std


def _nearest(name: str, names: list[str], what: str) -> str:
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
    hint = f"; nearest: {', '.join(close)}" if close else ""
    return f"unknown {what} {name!r}{hint}"


def _torchvision_names() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _weights_enum(name: str, weights: str):
    """The torchvision weights enum entry ``weights`` of model ``name`` (InputError if none)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    key = weights.split(".")[-1]  # accept ResNet50_Weights.IMAGENET1K_V2 as well
    if key.upper() == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[key]
    except KeyError:
        choices = ", ".join(["DEFAULT", *(e.name for e in enum)])
        raise InputError(f"{name} has no weights {weights!r}; torchvision publishes {choices}") from None


def _enum_state_dict(entry) -> dict[str, torch.Tensor]:
    try:
        return entry.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # urllib/ssl/socket errors vary by platform; all mean "not fetched"
        raise FoveaRayError(
            f"torchvision weights {entry} could not be fetched from {entry.url} ({type(err).__name__}: {err}); "
            "on a machine without internet, copy that file into torch's hub cache (TORCH_HOME)"
        ) from err


def _seeded(seed: int, make):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


_ENUM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?$")
_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".pkl", ".ckpt")


def _is_path_weights(weights: str | None) -> bool:
    """A file or folder (existing, or written like one), not a keyword or enum name."""
    if weights is None or weights.lower() in _RANDOM:
        return False
    if Path(weights).expanduser().exists() or weights.lower().endswith(_FILE_SUFFIXES):
        return True
    return not _ENUM_NAME.match(weights)


def _load_local(weights: str) -> tuple[Mapping[str, torch.Tensor], dict[str, Any], str]:
    from fovea_ray.model.weights import load_checkpoint_with_meta

    state, meta, file = load_checkpoint_with_meta(weights)
    return state, meta, str(file)


def _build_torchvision(ref: ModelRef, weights: str | None, seed: int, num_classes: int | None):
    from torchvision.models import get_model

    from fovea_ray.model.spec import DETECTION_MODELS

    names = _torchvision_names()
    if ref.target not in names:
        known = [*DETECTION_MODELS, *names]
        raise InputError(_nearest(ref.target, known, "model") + " (torchvision: torchvision.models.list_models())")
    state, meta, source, entry = None, {}, "random", None
    kwargs: dict[str, Any] = {}
    if weights is not None and weights.lower() not in _RANDOM:
        if _is_path_weights(weights):
            state, meta, source = _load_local(weights)
            if meta.get("kind") == "pretrain":
                if meta.get("arch") not in (None, ref.target):
                    raise InputError(f"{source}: pretrain checkpoint is for {meta['arch']!r}, not {ref.target!r}")
                num_classes = int(meta.get("num_classes", num_classes or 1000))
        else:
            entry = _weights_enum(ref.target, weights)
            source = f"torchvision:{entry}"
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    model = _seeded(seed, lambda: get_model(ref.target, weights=None, **kwargs))
    if entry is not None:
        state = _enum_state_dict(entry)
    return model, state, meta, source, entry


def _build_timm(ref: ModelRef, weights: str | None, seed: int, num_classes: int | None):
    try:
        import timm
    except ImportError as err:
        raise InputError(f"{ref.name} needs timm: pip install 'fovea-ray[timm]' (or pip install timm)") from err
    names = timm.list_models()
    if ref.target not in names:
        raise InputError(_nearest(ref.target, names, "timm model") + " (list: timm.list_models())")
    pretrained, state, meta, source = False, None, {}, "random"
    if weights is not None and weights.lower() not in _RANDOM:
        if weights.lower() in ("pretrained", "timm", "default"):
            pretrained, source = True, f"timm:{ref.target}:pretrained"
        elif _is_path_weights(weights):
            state, meta, source = _load_local(weights)
        else:
            raise InputError(f"{ref.name}: weights {weights!r} are not 'none', 'pretrained' or a file")
    kwargs = {} if num_classes is None else {"num_classes": int(num_classes)}
    try:
        model = _seeded(seed, lambda: timm.create_model(ref.target, pretrained=pretrained, **kwargs))
    except Exception as err:  # hub download errors vary; only pretrained=True fetches
        if not pretrained:
            raise
        raise FoveaRayError(
            f"timm weights for {ref.target} could not be fetched ({type(err).__name__}: {err}); "
            "they download from the Hugging Face hub (HF_HOME caches them)"
        ) from err
    return model, state, meta, source, None


def _build_factory(ref: ModelRef, weights: str | None, seed: int):
    module_name, _, attr = ref.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InputError(
            f"{ref.name}: cannot import module {module_name!r} ({err}); it must be importable where the "
            "network is built (every Ray worker: install it, or put it on PYTHONPATH)"
        ) from err
    factory: Any = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            names = [n for n in dir(factory) if not n.startswith("_")]
            raise InputError(f"{ref.name}: " + _nearest(part, names, f"name in {module_name}"))
        factory = getattr(factory, part)
    if not callable(factory):
        raise InputError(f"{ref.name}: {attr} is a {type(factory).__name__}, not a function")
    model = _seeded(seed, factory)
    if not isinstance(model, nn.Module):
        raise InputError(f"{ref.name} returned a {type(model).__name__}, not a torch nn.Module")
    state, meta, source = None, {}, "random"
    if weights is not None and weights.lower() not in _RANDOM:
        state, meta, source = _load_local(weights)
    return model, state, meta, source, None


def _input_spec(ref: ModelRef, model: nn.Module, entry, meta: Mapping[str, Any]) -> InputSpec:
    if entry is not None:
        t = entry.transforms()
        crop = list(getattr(t, "crop_size", [DEFAULT_INPUT_SIZE]))
        size = (int(crop[0]), int(crop[-1]))
        interpolation = str(getattr(t, "interpolation", "bilinear")).split(".")[-1].lower()
        return InputSpec(size, tuple(t.mean), tuple(t.std), _interp(interpolation), f"torchvision:{entry}")
    if meta.get("kind") == "pretrain":
        norm = meta.get("normalize", {})
        side = meta.get("input_size", DEFAULT_INPUT_SIZE)
        side = (int(side), int(side)) if isinstance(side, (int, float)) else (int(side[-2]), int(side[-1]))
        return InputSpec(
            side,
            tuple(float(v) for v in norm.get("mean", IMAGENET_MEAN)),
            tuple(float(v) for v in norm.get("std", IMAGENET_STD)),
            source="pretrain meta.json",
        )
    cfg = getattr(model, "pretrained_cfg", None)
    if ref.kind == "timm" and isinstance(cfg, Mapping):
        size = cfg.get("input_size", (3, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE))
        return InputSpec(
            (int(size[-2]), int(size[-1])),
            tuple(cfg.get("mean", IMAGENET_MEAN)),
            tuple(cfg.get("std", IMAGENET_STD)),
            _interp(str(cfg.get("interpolation", "bilinear"))),
            "timm pretrained_cfg",
        )
    side = getattr(model, "image_size", None)
    if isinstance(side, int):  # torchvision's ViT is built for one input size
        return InputSpec((side, side), source="model image_size, ImageNet mean/std")
    return InputSpec((DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE), source="default 224, ImageNet mean/std")


def _interp(name: str) -> str:
    return "bicubic" if name.lower() == "bicubic" else "bilinear"


def prefix_tokens(model: nn.Module) -> int:
    """Leading non-patch tokens of the model's (B, N, C) maps (class and register tokens)."""
    count = getattr(model, "num_prefix_tokens", None)  # timm
    if isinstance(count, int):
        return count
    if isinstance(getattr(model, "class_token", None), torch.Tensor):  # torchvision ViT
        return 1
    return 0


def patch_tokens(model: nn.Module) -> int | None:
    """How many patch tokens a ViT's token maps hold (None when the model does not say).

    A (B, N, C) map has its prefix tokens only when ``N`` = prefix + patches: the patch
    embedding's own output (timm's ``patch_embed``) comes before the class token is added.
    """
    embed = getattr(model, "patch_embed", None)
    count = getattr(embed, "num_patches", None)  # timm
    if isinstance(count, int):
        return count
    seq = getattr(model, "seq_length", None)  # torchvision ViT: patches + class token
    if isinstance(seq, int) and isinstance(getattr(model, "class_token", None), torch.Tensor):
        return seq - 1
    return None


def _middle(container: nn.Module) -> str:
    names = [n for n, _ in container.named_children()]
    return names[(len(names) - 1) // 2] if names else ""


def default_layer(model: nn.Module) -> str:
    """The family's layer at about half depth (the study's role of ``layer3.22.bn3``).

    - ResNet / ResNeXt / Wide ResNet (anything with ``layer3``): ``layer3``'s middle block
      (``layer3.2`` of ResNet-50's six, ``layer3.11`` of ResNet-101's 23).
    - ConvNeXt: the middle block of the third (largest) stage, ``features.5.4`` of
      convnext_tiny.
    - ViT: block L/2 of L: ``encoder.layers.encoder_layer_5`` of vit_b_16 (block 6 of 12);
      timm ViTs ``blocks.5``.
    - EfficientNet, MobileNet and others with ``features``: ``features.{len // 2}``.
    - timm models with ``feature_info``: its middle stage.
    - Anything else (a user's factory): the middle named child (the first of the two middle
      ones for an even count).
    """
    from torchvision.models import ConvNeXt, VisionTransformer

    if isinstance(model, VisionTransformer):
        layers = model.encoder.layers
        return f"encoder.layers.{[n for n, _ in layers.named_children()][len(layers) // 2 - 1]}"
    if isinstance(model, ConvNeXt):
        return f"features.5.{_middle(model.features[5])}"
    layer3 = getattr(model, "layer3", None)
    if isinstance(layer3, nn.Sequential) and len(layer3):
        return f"layer3.{_middle(layer3)}"
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) and hasattr(model, "num_prefix_tokens"):
        return f"blocks.{len(blocks) // 2 - 1}"
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and len(features):
        return f"features.{len(features) // 2}"
    info = getattr(model, "feature_info", None)
    modules = [f.get("module") for f in info] if isinstance(info, list) and info else []
    names = dict(model.named_modules())
    modules = [m for m in modules if m in names]
    if modules:
        return modules[len(modules) // 2]
    return _middle(model)


def block_patterns(model: nn.Module) -> list[str]:
    """Every block of the network, for a layer sweep (``--layers :blocks``), in depth order.

    Mask R-CNN: the 33 (R101) / 16 (R50) bottlenecks ``backbone.body.layer*.*``; ResNets
    ``layer*.*``; ConvNeXt the blocks of its four stages (not the downsampling layers);
    ViT the encoder blocks; timm models with ``blocks`` those; models with ``features``
    its entries; anything else its named children.
    """
    from torchvision.models import ConvNeXt, VisionTransformer

    if hasattr(model, "transform") and hasattr(model, "backbone"):
        return ["backbone.body.layer*.*"]
    if isinstance(model, VisionTransformer):
        return ["encoder.layers.*"]
    if isinstance(model, ConvNeXt):
        return [
            f"features.{i}.{name}"
            for i, stage in enumerate(model.features)
            if i % 2 == 1
            for name, _ in stage.named_children()
        ]
    if isinstance(getattr(model, "layer3", None), nn.Sequential):
        return ["layer*.*"]
    if isinstance(getattr(model, "blocks", None), (nn.Sequential, nn.ModuleList)):
        return ["blocks.*"]
    if isinstance(getattr(model, "features", None), nn.Sequential):
        return ["features.*"]
    return ["*"]


def build_network(
    ref: ModelRef,
    weights: str | None,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build a torchvision / timm / factory network in eval mode (see the module docstring).

    Weights: ``None`` / ``"none"`` (random, drawn from ``seed``; the global RNG is left
    untouched), a torchvision enum name (``DEFAULT``, ``IMAGENET1K_V2``), ``"pretrained"``
    (timm), a state-dict file or a ``fovea-ray pretrain`` / ``train`` folder (its newest
    ``model.pt``), loaded with ``weights_only=True`` and strictly (the first mismatched
    keys are named).
    """
    from fovea_ray.model.build import load_state_dict_strict
    from fovea_ray.model.weights import weights_checksum

    if ref.kind == "torchvision":
        model, state, meta, source, entry = _build_torchvision(ref, weights, seed, num_classes)
    elif ref.kind == "timm":
        model, state, meta, source, entry = _build_timm(ref, weights, seed, num_classes)
    elif ref.kind == "factory":
        model, state, meta, source, entry = _build_factory(ref, weights, seed)
    else:
        raise InputError(f"{ref.name} is a {ref.kind} model; build it with fovea_ray.model.build_model")
    if state is not None:
        load_state_dict_strict(model, state, source)
    model.eval()
    model.to(device)
    model.fovea_ray_info = {
        "model": ref.name,
        "kind": ref.kind,
        "weights": source,
        "seed": seed if state is None else None,
        "input": _input_spec(ref, model, entry, meta).to_dict(),
        "prefix_tokens": prefix_tokens(model),
        "patch_tokens": patch_tokens(model),
        "default_layer": default_layer(model),
        "checksum": weights_checksum(model),
    }
    return model
