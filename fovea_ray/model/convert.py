"""Convert maskrcnn-benchmark and detectron2 ResNet-FPN Mask R-CNN checkpoints to torchvision.

The study's own model was trained in maskrcnn-benchmark (Massa & Girshick, 2018); most
published Mask R-CNN models live in it or in detectron2 (Wu et al., 2019). Both name
their modules differently from torchvision and differ in conventions that change the
network's function. The converter maps every name and reproduces these conventions
exactly, recording them in the checkpoint so that
:func:`fovea_ray.model.build_model` rebuilds the same network:

- **Stride in the 1x1 convolution.** MSRA ResNets (``STRIDE_IN_1X1=True``, the default
  of both frameworks' R-50/R-101 models) stride each stage's first block in its 1x1
  ``conv1``; torchvision strides the 3x3 ``conv2``. Rebuilt by moving the stride.
- **BGR input in 0-255 with per-channel mean/std.** Folded in exactly: the first
  convolution's input channels are reversed and mean/std are divided by 255, so the
  model takes RGB in [0, 1] like every torchvision model.
- **Frozen batch norm epsilon.** maskrcnn-benchmark's FrozenBatchNorm2d has none (0);
  detectron2's uses 1e-5 like torchvision. Set per checkpoint.
- **Class layout.** maskrcnn-benchmark has 81 outputs (background first), detectron2 80
  class scores plus background last and class-specific boxes and masks without a
  background row. Both become torchvision's layout; 80-class COCO models are expanded to
  torchvision's 91 COCO category ids (the 11 unused ids get zero weights and a -1e4
  logit bias, whose softmax probability is exactly 0 in float32), so labels are COCO
  category ids as with torchvision's own weights.

What is *not* reproduced, and therefore announced with a warning when such a
checkpoint is loaded (``heads_exact = False``): the detection post-processing, which
follows torchvision. maskrcnn-benchmark decodes and clips boxes with the legacy "+1"
pixel convention, builds Detectron-style anchors and maps RoIs to FPN levels with "+1"
areas; detectron2 uses ROIAlignV2 (``aligned=True``) and unrounded anchors. Backbone and
FPN (everything the taps read) are exact; detections and scores can differ slightly.

Variants refused with a message: class-agnostic box regression or masks, group norm,
deformable convolutions, and any key the converter does not know (never dropped silently).

Command line: ``fovea-ray convert SRC DST [--source ...]`` (``python -m fovea_ray.model.convert`` is an alias).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fovea_ray.errors import InputError

__all__ = [
    "COCO_CATEGORY_IDS",
    "SOURCES",
    "convert_checkpoint",
    "convert_state_dict",
    "detect_source",
    "to_source_state_dict",
]

SOURCES = ("maskrcnn-benchmark", "detectron2")

#: The 80 COCO category ids in contiguous-label order (label i + 1 -> id).
COCO_CATEGORY_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
)  # fmt: skip
_COCO_NUM_CLASSES = 91
_GAP_LOGIT = -1.0e4

_DEFAULTS: dict[str, dict[str, Any]] = {
    # maskrcnn-benchmark/config/defaults.py: INPUT.PIXEL_MEAN/STD, TO_BGR255, FrozenBatchNorm2d without eps.
    "maskrcnn-benchmark": {
        "pixel_mean": [102.9801, 115.9465, 122.7717],
        "pixel_std": [1.0, 1.0, 1.0],
        "input_format": "BGR255",
        "frozen_bn_eps": 0.0,
    },
    # detectron2/config/defaults.py: MODEL.PIXEL_MEAN/STD, INPUT.FORMAT; FrozenBatchNorm2d(eps=1e-5).
    "detectron2": {
        "pixel_mean": [103.530, 116.280, 123.675],
        "pixel_std": [1.0, 1.0, 1.0],
        "input_format": "BGR255",
        "frozen_bn_eps": 1e-5,
    },
}
_INPUT_FORMATS = ("BGR255", "RGB255", "RGB1")

# Name rules: (source template, torchvision template). ``{P}`` is a parameter name;
# ``{v}``/``{v+k}`` an integer, so that each rule maps both ways.
_RULES: dict[str, list[tuple[str, str]]] = {
    "maskrcnn-benchmark": [
        ("backbone.body.stem.conv1.{P}", "backbone.body.conv1.{P}"),
        ("backbone.body.stem.bn1.{P}", "backbone.body.bn1.{P}"),
        ("backbone.body.layer{s}.{b}.conv{c}.{P}", "backbone.body.layer{s}.{b}.conv{c}.{P}"),
        ("backbone.body.layer{s}.{b}.bn{c}.{P}", "backbone.body.layer{s}.{b}.bn{c}.{P}"),
        ("backbone.body.layer{s}.{b}.downsample.{d}.{P}", "backbone.body.layer{s}.{b}.downsample.{d}.{P}"),
        ("backbone.fpn.fpn_inner{i+1}.{P}", "backbone.fpn.inner_blocks.{i}.0.{P}"),
        ("backbone.fpn.fpn_layer{i+1}.{P}", "backbone.fpn.layer_blocks.{i}.0.{P}"),
        ("rpn.head.conv.{P}", "rpn.head.conv.0.0.{P}"),
        ("rpn.head.cls_logits.{P}", "rpn.head.cls_logits.{P}"),
        ("rpn.head.bbox_pred.{P}", "rpn.head.bbox_pred.{P}"),
        ("roi_heads.box.feature_extractor.fc6.{P}", "roi_heads.box_head.fc6.{P}"),
        ("roi_heads.box.feature_extractor.fc7.{P}", "roi_heads.box_head.fc7.{P}"),
        ("roi_heads.box.predictor.cls_score.{P}", "roi_heads.box_predictor.cls_score.{P}"),
        ("roi_heads.box.predictor.bbox_pred.{P}", "roi_heads.box_predictor.bbox_pred.{P}"),
        ("roi_heads.mask.feature_extractor.mask_fcn{i+1}.{P}", "roi_heads.mask_head.{i}.0.{P}"),
        ("roi_heads.mask.predictor.conv5_mask.{P}", "roi_heads.mask_predictor.conv5_mask.{P}"),
        ("roi_heads.mask.predictor.mask_fcn_logits.{P}", "roi_heads.mask_predictor.mask_fcn_logits.{P}"),
    ],
    "detectron2": [
        ("backbone.bottom_up.stem.conv1.weight", "backbone.body.conv1.weight"),
        ("backbone.bottom_up.stem.conv1.norm.{P}", "backbone.body.bn1.{P}"),
        ("backbone.bottom_up.res{s+1}.{b}.conv{c}.weight", "backbone.body.layer{s}.{b}.conv{c}.weight"),
        ("backbone.bottom_up.res{s+1}.{b}.conv{c}.norm.{P}", "backbone.body.layer{s}.{b}.bn{c}.{P}"),
        ("backbone.bottom_up.res{s+1}.{b}.shortcut.weight", "backbone.body.layer{s}.{b}.downsample.0.weight"),
        ("backbone.bottom_up.res{s+1}.{b}.shortcut.norm.{P}", "backbone.body.layer{s}.{b}.downsample.1.{P}"),
        ("backbone.fpn_lateral{i+2}.{P}", "backbone.fpn.inner_blocks.{i}.0.{P}"),
        ("backbone.fpn_output{i+2}.{P}", "backbone.fpn.layer_blocks.{i}.0.{P}"),
        ("proposal_generator.rpn_head.conv.{P}", "rpn.head.conv.0.0.{P}"),
        ("proposal_generator.rpn_head.objectness_logits.{P}", "rpn.head.cls_logits.{P}"),
        ("proposal_generator.rpn_head.anchor_deltas.{P}", "rpn.head.bbox_pred.{P}"),
        ("roi_heads.box_head.fc1.{P}", "roi_heads.box_head.fc6.{P}"),
        ("roi_heads.box_head.fc2.{P}", "roi_heads.box_head.fc7.{P}"),
        ("roi_heads.box_predictor.cls_score.{P}", "roi_heads.box_predictor.cls_score.{P}"),
        ("roi_heads.box_predictor.bbox_pred.{P}", "roi_heads.box_predictor.bbox_pred.{P}"),
        ("roi_heads.mask_head.mask_fcn{i+1}.{P}", "roi_heads.mask_head.{i}.0.{P}"),
        ("roi_heads.mask_head.deconv.{P}", "roi_heads.mask_predictor.conv5_mask.{P}"),
        ("roi_heads.mask_head.predictor.{P}", "roi_heads.mask_predictor.mask_fcn_logits.{P}"),
    ],
}
# Source entries that carry no weights of the torchvision model; kept aside for the inverse.
_EXTRAS = {
    "maskrcnn-benchmark": re.compile(r"^rpn\.anchor_generator\.cell_anchors\.\d+$"),
    "detectron2": re.compile(r"^(pixel_mean|pixel_std)$"),
}
_TOKEN = re.compile(r"\{(\w+)([+-]\d+)?\}")

_CLS = "roi_heads.box_predictor.cls_score."
_BOX = "roi_heads.box_predictor.bbox_pred."
_MASK = "roi_heads.mask_predictor.mask_fcn_logits."
_CONV1 = "backbone.body.conv1.weight"

HEADS_NOTE = (
    "detection post-processing follows torchvision (box coding, anchors, RoI level mapping, "
    "RoIAlign alignment), so detections and scores can differ slightly from the source framework"
)


class _Template:
    def __init__(self, template: str) -> None:
        self.template = template
        self.offsets: dict[str, int] = {}
        pattern, pos = "", 0
        for match in _TOKEN.finditer(template):
            pattern += re.escape(template[pos : match.start()])
            name, offset = match.group(1), int(match.group(2) or 0)
            if name == "P":
                pattern += r"(?P<P>[A-Za-z0-9_]+)"
            else:
                pattern += rf"(?P<{name}>\d+)"
                self.offsets[name] = offset
            pos = match.end()
        pattern += re.escape(template[pos:])
        self.regex = re.compile(f"^{pattern}$")

    def parse(self, name: str) -> dict[str, Any] | None:
        match = self.regex.match(name)
        if match is None:
            return None
        values: dict[str, Any] = {}
        for key, text in match.groupdict().items():
            values[key] = text if key == "P" else int(text) - self.offsets[key]
        return values

    def format(self, values: Mapping[str, Any]) -> str:
        def repl(match: re.Match[str]) -> str:
            name, offset = match.group(1), int(match.group(2) or 0)
            return str(values[name]) if name == "P" else str(values[name] + offset)

        return _TOKEN.sub(repl, self.template)


_COMPILED = {src: [(_Template(a), _Template(b)) for a, b in rules] for src, rules in _RULES.items()}


def _rename(name: str, rules: list[tuple[_Template, _Template]]) -> str | None:
    for source, target in rules:
        values = source.parse(name)
        if values is not None:
            return target.format(values)
    return None


def detect_source(state_dict: Mapping[str, Any]) -> str:
    """``"maskrcnn-benchmark"`` or ``"detectron2"``, from the key names."""
    keys = list(state_dict)
    if any(k.startswith("backbone.bottom_up.") for k in keys):
        return "detectron2"
    if any(k.startswith("backbone.body.stem.") for k in keys):
        return "maskrcnn-benchmark"
    if any(k.startswith("backbone.body.conv1.") for k in keys):
        raise InputError(
            "this state dict already has torchvision names; load it directly with build_model(weights=PATH)"
        )
    raise InputError(
        "cannot tell the checkpoint's framework from its keys (expected maskrcnn-benchmark 'backbone.body.stem.*' or "
        "detectron2 'backbone.bottom_up.*')"
    )


def _strip(state_dict: Mapping[str, Any]) -> OrderedDict[str, torch.Tensor]:
    from fovea_ray.model.weights import strip_prefixes

    state = strip_prefixes(state_dict)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if not isinstance(value, torch.Tensor):
            try:
                value = torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError) as err:
                raise InputError(f"state dict entry {key!r} is not an array ({type(value).__name__})") from err
        out[key] = value
    return out


def _stage_depths(converted: Mapping[str, torch.Tensor]) -> list[int]:
    depths = []
    for stage in range(1, 5):
        blocks = {int(k.split(".")[3]) for k in converted if k.startswith(f"backbone.body.layer{stage}.")}
        depths.append(len(blocks))
    return depths


def _expand_coco(tensor: torch.Tensor, per_class: int, fill: float) -> torch.Tensor:
    """(1 + 80) * per_class rows (background first) -> 91 * per_class rows at COCO ids."""
    rows = tensor.reshape(81, per_class, *tensor.shape[1:])
    out = torch.full((_COCO_NUM_CLASSES, per_class, *tensor.shape[1:]), fill, dtype=tensor.dtype)
    out[0] = rows[0]
    out[list(COCO_CATEGORY_IDS)] = rows[1:]
    return out.reshape(_COCO_NUM_CLASSES * per_class, *tensor.shape[1:])


def _contract_coco(tensor: torch.Tensor, per_class: int) -> torch.Tensor:
    rows = tensor.reshape(_COCO_NUM_CLASSES, per_class, *tensor.shape[1:])
    keep = [0, *COCO_CATEGORY_IDS]
    return rows[keep].reshape(81 * per_class, *tensor.shape[1:]).clone()


def _head_rows(key: str) -> int | None:
    """Rows per class of a class-indexed head parameter (None if not class-indexed)."""
    if key.startswith(_CLS) or key.startswith(_MASK):
        return 1
    if key.startswith(_BOX):
        return 4
    return None


def _rgb_normalisation(
    mean: Sequence[float], std: Sequence[float], input_format: str
) -> tuple[list[float], list[float]]:
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise InputError(f"pixel mean/std must be 3 numbers (std > 0), got {mean} / {std}")
    if input_format == "BGR255":
        return [v / 255.0 for v in mean[::-1]], [v / 255.0 for v in std[::-1]]
    if input_format == "RGB255":
        return [v / 255.0 for v in mean], [v / 255.0 for v in std]
    return mean, std


def convert_state_dict(
    state_dict: Mapping[str, Any],
    source: str | None = None,
    *,
    stride_in_1x1: bool = True,
    input_format: str | None = None,
    pixel_mean: Sequence[float] | None = None,
    pixel_std: Sequence[float] | None = None,
    frozen_bn_eps: float | None = None,
    coco_ids: bool | None = None,
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any], dict[str, torch.Tensor]]:
    """Rename and reshape a source state dict for torchvision's MaskRCNN.

    Parameters
    ----------
    state_dict : Mapping
        maskrcnn-benchmark or detectron2 weights (``module.`` prefixes allowed).
    source : str or None, optional
        one of :data:`SOURCES`; None detects it from the keys.
    stride_in_1x1 : bool, optional
        the source ResNet strides its 1x1 convolutions (MSRA models: True;
        models initialised from torchvision ResNets: False). Weights cannot reveal it.
    input_format : str or None, optional
        ``"BGR255"`` (both frameworks' default), ``"RGB255"`` or ``"RGB1"``.
    pixel_mean, pixel_std : sequence of float or None, optional
        in the source's channel order and scale; default to the
        framework's defaults (detectron2's ``pixel_mean``/``pixel_std`` buffers win).
    frozen_bn_eps : float or None, optional
        default 0 for maskrcnn-benchmark, 1e-5 for detectron2.
    coco_ids : bool or None, optional
        expand 80-class COCO heads to torchvision's 91 category ids (default:
        when the heads have exactly 80 classes).

    Returns
    -------
    tuple of (OrderedDict, dict, dict)
        (torchvision state dict, conventions for :func:`~fovea_ray.model.build.apply_conventions`,
        source-only extras needed by :func:`to_source_state_dict`).
    """
    state = _strip(state_dict)
    source = source or detect_source(state)
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    defaults = _DEFAULTS[source]
    input_format = input_format or defaults["input_format"]
    if input_format not in _INPUT_FORMATS:
        raise InputError(f"unknown input_format {input_format!r}; choose one of {', '.join(_INPUT_FORMATS)}")
    extras = {k: v for k, v in state.items() if _EXTRAS[source].match(k)}
    if source == "detectron2" and "pixel_mean" in extras and pixel_mean is None:
        pixel_mean = extras["pixel_mean"].flatten().tolist()
    if source == "detectron2" and "pixel_std" in extras and pixel_std is None:
        pixel_std = extras["pixel_std"].flatten().tolist()
    pixel_mean = list(pixel_mean if pixel_mean is not None else defaults["pixel_mean"])
    pixel_std = list(pixel_std if pixel_std is not None else defaults["pixel_std"])

    rules = _COMPILED[source]
    converted: OrderedDict[str, torch.Tensor] = OrderedDict()
    unknown = []
    for key, value in state.items():
        if key in extras:
            continue
        target = _rename(key, rules)
        if target is None:
            unknown.append(key)
        else:
            converted[target] = value
    if unknown:
        hint = ""
        if any("gn" in k or ".offset" in k or "conv_offset" in k for k in unknown):
            hint = " (group norm and deformable convolutions have no torchvision equivalent)"
        shown = ", ".join(unknown[:6]) + (f" (+{len(unknown) - 6} more)" if len(unknown) > 6 else "")
        raise InputError(
            f"{source} checkpoint has keys the converter does not know: {shown}{hint}; refusing rather than dropping "
            "them"
        )

    # Class layout -> torchvision's (background first, class-specific boxes and masks).
    cls_key = _CLS + "weight"
    if cls_key not in converted:
        raise InputError(f"{source} checkpoint has no box classifier ({cls_key} after renaming)")
    num_with_bg = converted[cls_key].shape[0]
    for key in list(converted):
        rows = _head_rows(key)
        if rows is None:
            continue
        tensor = converted[key]
        if source == "detectron2":
            if key.startswith(_CLS):
                tensor = torch.cat([tensor[-1:], tensor[:-1]])  # background last -> first
            else:
                if tensor.shape[0] != (num_with_bg - 1) * rows:
                    kind = "box regression" if rows == 4 else "masks"
                    raise InputError(
                        f"detectron2 checkpoint has class-agnostic {kind} ({key}: {tensor.shape[0]} rows); "
                        "torchvision needs class-specific heads"
                    )
                tensor = torch.cat([torch.zeros_like(tensor[:rows]), tensor])  # add a background row
        elif tensor.shape[0] != num_with_bg * rows:
            raise InputError(
                f"maskrcnn-benchmark head {key} has {tensor.shape[0]} rows, expected {num_with_bg * rows} "
                "(class-agnostic heads are not supported)"
            )
        converted[key] = tensor
    expand = (num_with_bg == 81) if coco_ids is None else bool(coco_ids)
    if expand:
        if num_with_bg != 81:
            raise InputError(f"coco_ids=True needs 80-class heads, this checkpoint has {num_with_bg - 1} classes")
        for key in list(converted):
            rows = _head_rows(key)
            if rows is not None:
                fill = _GAP_LOGIT if key == _CLS + "bias" else 0.0
                converted[key] = _expand_coco(converted[key], rows, fill)
    num_classes = converted[cls_key].shape[0]

    if input_format == "BGR255":
        # Reversing conv1's input channels makes it read RGB: exact, no arithmetic.
        converted[_CONV1] = converted[_CONV1].flip(1).contiguous()
    image_mean, image_std = _rgb_normalisation(pixel_mean, pixel_std, input_format)

    depths = _stage_depths(converted)
    arch = {(3, 4, 23, 3): "resnet101", (3, 4, 6, 3): "resnet50"}.get(tuple(depths))
    if arch is None:
        raise InputError(
            f"{source} checkpoint has a ResNet with stage depths {depths}; only ResNet-50 (3, 4, 6, 3) and ResNet-101 "
            "(3, 4, 23, 3) are supported"
        )
    conventions = {
        "source": source,
        "arch": arch,
        "num_classes": int(num_classes),
        "class_layout": "coco91" if expand else "contiguous",
        "stride_in_1x1": bool(stride_in_1x1),
        "frozen_bn_eps": float(frozen_bn_eps if frozen_bn_eps is not None else defaults["frozen_bn_eps"]),
        "input_format": input_format,
        "source_pixel_mean": [float(v) for v in pixel_mean],
        "source_pixel_std": [float(v) for v in pixel_std],
        "image_mean": image_mean,
        "image_std": image_std,
        "heads_exact": False,
        "heads_note": HEADS_NOTE,
    }
    return converted, conventions, extras


def to_source_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    conventions: Mapping[str, Any],
    extras: Mapping[str, torch.Tensor] | None = None,
) -> OrderedDict[str, torch.Tensor]:
    """The inverse of :func:`convert_state_dict`: torchvision names and layout -> the source's."""
    source = conventions["source"]
    state = OrderedDict((k, v) for k, v in state_dict.items())
    if conventions.get("input_format") == "BGR255":
        state[_CONV1] = state[_CONV1].flip(1).contiguous()
    for key in list(state):
        rows = _head_rows(key)
        if rows is None:
            continue
        tensor = state[key]
        if conventions.get("class_layout") == "coco91":
            tensor = _contract_coco(tensor, rows)
        if source == "detectron2":
            tensor = torch.cat([tensor[1:], tensor[:1]]) if key.startswith(_CLS) else tensor[rows:]
        state[key] = tensor
    inverse = [(b, a) for a, b in _COMPILED[source]]
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        target = _rename(key, inverse)
        if target is None:
            raise InputError(f"torchvision key {key!r} has no {source} name")
        out[target] = value
    out.update(extras or {})
    return out


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    source: str | None = None,
    **options: Any,
) -> Path:
    """Convert a checkpoint file and write a torchvision one that :func:`build_model` loads.

    ``src`` is read safely (``.pkl``: numpy arrays only; ``.pth``: ``weights_only``). The
    output holds ``{"model": state dict, "fovea_ray": {"conventions": ..., "source_extras": ...}}``.
    The converted weights are loaded strictly into a freshly built model before anything is
    written, so a written file always fits. ``options`` go to :func:`convert_state_dict`.
    """
    from fovea_ray.model.build import apply_conventions, build_model, load_state_dict_strict
    from fovea_ray.model.weights import META_KEY, load_checkpoint

    src, dst = Path(src), Path(dst)
    state = load_checkpoint(src)
    try:
        converted, conventions, extras = convert_state_dict(state, source, **options)
    except InputError as err:
        raise InputError(f"{src}: {err}") from err
    model = build_model(conventions["arch"], canvas=(64, 64), num_classes=conventions["num_classes"])
    apply_conventions(model, conventions)
    load_state_dict_strict(model, converted, str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": converted, META_KEY: {"conventions": conventions, "source_extras": dict(extras)}}, dst)
    return dst


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fovea_ray.model.convert SRC DST ...``: an alias of ``fovea-ray convert``."""
    import sys

    from fovea_ray.cli import main as cli_main

    cli_main(["convert", *(sys.argv[1:] if argv is None else argv)])  # exits non-zero on an error
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
