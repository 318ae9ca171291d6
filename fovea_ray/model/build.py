"""Mask R-CNN (ResNet-101 or ResNet-50 FPN) built for a fixed input canvas.

The network is torchvision's :class:`~torchvision.models.detection.MaskRCNN` (He et al.,
"Mask R-CNN", ICCV 2017) on a ResNet FPN backbone (He et al., "Deep Residual Learning",
CVPR 2016; Lin et al., "Feature Pyramid Networks", CVPR 2017), with frozen batch norm as
in every published Mask R-CNN.

Scale is part of the experiment (an object's size on the canvas sets how much of the
foveated resolution the network sees), so the model never rescales its input: the
internal :class:`~torchvision.models.detection.transform.GeneralizedRCNNTransform`
is replaced by :class:`CanvasTransform`, whose ``min_size``/``max_size`` equal the canvas
and whose resize step is the identity. Images are only normalised and zero-padded to a
multiple of 32 for batching.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fovea_ray.errors import FoveaRayError, InputError
from fovea_ray.model.spec import DETECTION_MODELS, ModelRef, model_from_arch, parse_model
from fovea_ray.model.weights import load_checkpoint_with_meta, weights_checksum

__all__ = [
    "ARCHS",
    "DETECTION_DEFAULT_LAYERS",
    "CanvasTransform",
    "apply_conventions",
    "build_model",
    "load_state_dict_strict",
]

#: Supported Mask R-CNN backbones (``arch=``).
ARCHS = tuple(DETECTION_MODELS.values())
#: The study's layer in each detector (R101: ``layer3.22.bn3``, 1024 channels) and its R50 twin.
DETECTION_DEFAULT_LAYERS = {
    "maskrcnn_resnet101_fpn": "backbone.body.layer3.22.bn3",
    "maskrcnn_resnet50_fpn": "backbone.body.layer3.5.bn3",
}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _transform_base() -> type:
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    return GeneralizedRCNNTransform


class CanvasTransform(_transform_base()):  # type: ignore[misc]
    """``GeneralizedRCNNTransform`` that never resizes: images keep their pixel scale.

    ``min_size``/``max_size`` are set from the canvas (so a canvas-sized image would not be
    rescaled by the parent class either), and :meth:`resize` is the identity for every size,
    which keeps smaller or differently shaped inputs at native scale too. Normalisation
    (``image_mean``/``image_std``) and padding to ``size_divisible`` are unchanged.
    """

    def __init__(
        self, canvas: tuple[int, int], image_mean: Sequence[float], image_std: Sequence[float], size_divisible: int = 32
    ) -> None:
        height, width = canvas
        super().__init__(
            min(height, width), max(height, width), list(image_mean), list(image_std), size_divisible=size_divisible
        )
        self.canvas = (int(height), int(width))

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        return image, target

    def __repr__(self) -> str:
        return (
            f"CanvasTransform(canvas={self.canvas}, mean={self.image_mean}, std={self.image_std}, "
            f"size_divisible={self.size_divisible})"
        )


def _model_ref(arch: str | None, model: str | ModelRef | None) -> ModelRef:
    """One model spec from ``arch`` (the legacy name of a Mask R-CNN backbone) or ``model``."""
    if model is not None and arch is not None:
        raise InputError(f"give arch={arch!r} or model={str(model)!r}, not both")
    if isinstance(model, ModelRef):
        return model
    if model is not None:
        try:
            return parse_model(str(model))
        except ValueError as err:
            raise InputError(str(err)) from None
    try:
        return parse_model(model_from_arch(arch or "resnet101"))
    except ValueError as err:
        raise InputError(str(err)) from None


def _check_canvas(canvas: Any) -> tuple[int, int]:
    if isinstance(canvas, int):
        canvas = (canvas, canvas)
    try:
        height, width = (int(v) for v in canvas)
    except (TypeError, ValueError) as err:
        raise InputError(f"canvas must be (height, width) in pixels, got {canvas!r}") from err
    if height < 32 or width < 32:
        raise InputError(f"canvas must be at least 32 x 32 pixels, got {height} x {width}")
    return height, width


def _make_network(arch: str, num_classes: int, trainable_layers: int) -> nn.Module:
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.misc import FrozenBatchNorm2d

    backbone = resnet_fpn_backbone(
        backbone_name=arch, weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=trainable_layers
    )
    return MaskRCNN(backbone, num_classes=num_classes)


def apply_conventions(model: nn.Module, conventions: Mapping[str, Any]) -> None:
    """Reconfigure a built model to reproduce another framework's network exactly.

    Keys (all optional), as written by :mod:`fovea_ray.model.convert`:

    - ``stride_in_1x1`` (bool): put the stride of each stage's first bottleneck in its 1x1
      ``conv1`` rather than its 3x3 ``conv2`` (MSRA ResNets in maskrcnn-benchmark and
      detectron2; torchvision follows the "ResNet v1.5" placement).
    - ``frozen_bn_eps`` (float): the epsilon of every frozen batch norm (maskrcnn-benchmark
      and torchvision's own COCO weights use 0).
    - ``image_mean`` / ``image_std`` (3 floats, RGB, for inputs in [0, 1]): the input
      normalisation. A BGR/255 convention is folded in by the converter (first conv's input
      channels reversed; mean and std divided by 255), which is exact.
    """
    from torchvision.ops.misc import FrozenBatchNorm2d

    if conventions.get("stride_in_1x1"):
        body = model.backbone.body
        for stage in ("layer2", "layer3", "layer4"):
            first = getattr(body, stage)[0]
            stride = first.conv2.stride
            if stride != (1, 1):
                first.conv1.stride, first.conv2.stride = stride, (1, 1)
    if "frozen_bn_eps" in conventions:
        eps = float(conventions["frozen_bn_eps"])
        for module in model.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.eps = eps
    if "image_mean" in conventions or "image_std" in conventions:
        mean = [float(v) for v in conventions.get("image_mean", model.transform.image_mean)]
        std = [float(v) for v in conventions.get("image_std", model.transform.image_std)]
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise InputError(f"bad input normalisation in checkpoint conventions: mean={mean}, std={std}")
        model.transform.image_mean, model.transform.image_std = mean, std


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(strict=True)`` with a readable error.

    The error lists missing keys, unexpected keys and shape mismatches (a few of each,
    with counts). ``num_batches_tracked`` entries of trainable batch norms are ignored,
    since the model's frozen batch norms have no such buffer.
    """
    own = model.state_dict()
    state = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked") or k in own}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:

        def few(items: list[str]) -> str:
            return ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (checkpoint vs model): {few(mismatched)}")
        hint = ""
        if any("roi_heads" in m for m in mismatched):
            hint = "; check num_classes"
        if any(".layer3." in k for k in missing + unexpected):
            hint += "; check arch (resnet50 vs resnet101)"
        raise InputError(f"{source}: weights do not fit the model: {'; '.join(parts)}{hint}")
    model.load_state_dict(state, strict=True)


def _torchvision_state_dict(arch: str) -> dict[str, torch.Tensor]:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    if arch != "resnet50":
        raise InputError(
            f"torchvision publishes COCO Mask R-CNN weights only for resnet50, not {arch}; "
            "use arch='resnet50', a checkpoint path, or a converted maskrcnn-benchmark / detectron2 R101 model"
        )
    entry = MaskRCNN_ResNet50_FPN_Weights.COCO_V1
    url = entry.url
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    try:
        return entry.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # urllib/ssl/socket errors vary by platform; all mean "not fetched"
        raise FoveaRayError(
            f"torchvision COCO weights could not be fetched from {url} ({type(err).__name__}: {err}); "
            f"on a machine without internet, copy that file to {cache} (TORCH_HOME sets the cache)"
        ) from err


def build_model(
    arch: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    canvas: tuple[int, int] | int = (640, 640),
    *,
    model: str | ModelRef | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    trainable_layers: int = 5,
) -> nn.Module:
    """Build a network in eval mode: Mask R-CNN (the study's) or any vision network.

    ``model`` is a spec (:mod:`fovea_ray.model.spec`): ``maskrcnn_resnet101_fpn`` (the
    default) or ``maskrcnn_resnet50_fpn`` give a torchvision ``MaskRCNN`` for
    ``canvas``-sized inputs, as below; ``resnet50``, ``convnext_tiny``, ``vit_b_16``, ...
    (torchvision), ``timm:NAME`` and ``package.module:function`` give that ``nn.Module``
    (:func:`fovea_ray.model.zoo.build_network`: weights ``none``, a torchvision enum name,
    ``pretrained`` for timm, a state dict or a ``fovea-ray pretrain`` folder). A spec's
    ``@WEIGHTS`` is used when ``weights`` is None. ``arch="resnet50"`` keeps meaning
    ``model="maskrcnn_resnet50_fpn"``.

    Parameters
    ----------
    arch : str or None, optional
        ``"resnet101"`` (the study's backbone, the default) or ``"resnet50"``.
    weights : str, PathLike or None, optional
        ``None`` / ``"none"``: random weights drawn from ``seed`` (torchvision's
        initialisation; the global RNG is left untouched). A path: a checkpoint file or a
        training output directory (its newest ``model.pt``), loaded safely and strictly,
        including checkpoints made by :func:`fovea_ray.model.convert.convert_checkpoint`.
        ``"torchvision"``: the public COCO weights (resnet50 only), downloaded at run time.
    canvas : tuple of int or int, optional
        (height, width) of the model input; the model never rescales it.
    model : str, ModelRef or None, optional
        a model spec (see above); give ``arch`` or ``model``, not both.
    num_classes : int or None, optional
        classifier outputs including background (91 = COCO category ids) for
        Mask R-CNN; for a classifier, its own default (or the pretrain folder's) unless set.
    seed : int, optional
        seed of the random initialisation (same seed, same weights and checksum).
    device : str or torch.device, optional
        where the model lives.
    trainable_layers : int, optional
        backbone stages left trainable (0-5) for fine-tuning.

    Notes
    -----
    The returned model carries ``model.fovea_ray_info``: arch, weights source, canvas,
    conventions and the sha256 ``checksum`` of its weights (:func:`weights_checksum`).
    """
    ref = _model_ref(arch, model)
    canvas_hw = _check_canvas(canvas)
    if weights is None and ref.weights is not None:
        weights = ref.weights
    if ref.kind != "detection":
        from fovea_ray.model.zoo import build_network

        if isinstance(weights, os.PathLike):
            weights = os.fspath(weights)
        net = build_network(ref, weights, seed=seed, num_classes=num_classes, device=device)
        net.fovea_ray_info["canvas"] = list(canvas_hw)
        return net
    arch = str(ref.arch)
    num_classes = 91 if num_classes is None else num_classes
    if not isinstance(num_classes, int) or num_classes < 2:
        raise InputError(f"num_classes must be an integer >= 2, got {num_classes!r}")

    state: Mapping[str, torch.Tensor] | None = None
    conventions: dict[str, Any] = {}
    source = "random"
    if isinstance(weights, str) and weights.lower() in ("none", ""):
        weights = None
    if isinstance(weights, str) and weights.lower() == "torchvision":
        state = _torchvision_state_dict(arch)
        conventions = {"frozen_bn_eps": 0.0}  # as torchvision's own maskrcnn_resnet50_fpn(COCO_V1)
        source = "torchvision:MaskRCNN_ResNet50_FPN_Weights.COCO_V1"
    elif weights is not None:
        state, meta, file = load_checkpoint_with_meta(weights)
        conventions = dict(meta.get("conventions", {}))
        if meta.get("kind") == "pretrain":
            raise InputError(
                f"{file}: a `fovea-ray pretrain` classifier checkpoint ({meta.get('arch')}); "
                f"use --model {meta.get('arch')} --weights with it, not a Mask R-CNN"
            )
        meta_arch = conventions.get("arch", meta.get("arch"))
        if meta_arch is not None and meta_arch != arch:
            raise InputError(f"{file}: checkpoint is for arch {meta_arch!r} but arch={arch!r} was requested")
        source = str(file)
        wanted = conventions.get("num_classes")
        if wanted is not None and int(wanted) != num_classes:
            raise InputError(f"{file}: checkpoint has {wanted} classes (with background); pass num_classes={wanted}")
        if conventions and not conventions.get("heads_exact", True):
            warnings.warn(
                f"{file}: converted from {conventions.get('source', 'another framework')}; backbone and FPN "
                "reproduce the original exactly, but detection post-processing follows torchvision "
                "(see fovea_ray.model.convert), so detections and scores can differ slightly",
                stacklevel=2,
            )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _make_network(arch, num_classes, trainable_layers)
    model.transform = CanvasTransform(canvas_hw, _IMAGENET_MEAN, _IMAGENET_STD)
    apply_conventions(model, conventions)
    if state is not None:
        load_state_dict_strict(model, state, source)
    model.eval()
    model.to(device)
    model.fovea_ray_info = {
        "model": ref.name,
        "kind": "detection",
        "arch": arch,
        "weights": source,
        "seed": seed if state is None else None,
        "canvas": list(canvas_hw),
        "num_classes": num_classes,
        "conventions": conventions,
        "checksum": weights_checksum(model),
        "default_layer": DETECTION_DEFAULT_LAYERS[ref.name],
    }
    return model
