"""Resolve layer names and patterns to a model's modules, in network depth order."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from fnmatch import fnmatchcase

import torch
from torch import nn

__all__ = ["bottleneck_layers", "resolve_layers", "tappable_layers"]

_WILDCARDS = set("*?[")


def _match_parts(pattern: list[str], name: list[str]) -> bool:
    """Dot-segment-wise glob: ``*`` stays within one segment, ``**`` spans any number."""
    if not pattern:
        return not name
    head = pattern[0]
    if head == "**":
        return any(_match_parts(pattern[1:], name[i:]) for i in range(len(name) + 1))
    return bool(name) and fnmatchcase(name[0], head) and _match_parts(pattern[1:], name[1:])


def resolve_layers(model: nn.Module, patterns: str | Iterable[str]) -> list[str]:
    """Module names matching ``patterns``, without duplicates, in network depth order.

    A pattern is an exact module name (``backbone.body.layer3.22.bn3``) or a glob matched
    segment by segment between dots: ``*`` matches within one segment and ``**`` any
    number of segments. So ``backbone.body.layer*.*`` is every bottleneck output (33 in
    ResNet-101) and not their inner convolutions. Comma-separated strings are split.

    Depth order is the order in which the model registers its modules, which for the
    ResNet body is the order of the forward pass. Raises ValueError naming any pattern
    that matches nothing (with the closest module names).
    """
    if isinstance(patterns, str):
        patterns = [p for p in (s.strip() for s in patterns.split(",")) if p]
    patterns = list(patterns)
    if not patterns:
        raise ValueError("no layers requested")
    names = [name for name, _ in model.named_modules() if name]
    chosen: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise ValueError(f"bad layer name {pattern!r}")
        pattern = pattern.strip()
        if _WILDCARDS & set(pattern):
            parts = pattern.split(".")
            hits = [n for n in names if _match_parts(parts, n.split("."))]
        else:
            hits = [pattern] if pattern in names else []
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"layer {pattern!r} matches no module of the model{hint}; {_outline(names)}")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def _outline(names: list[str], limit: int = 40) -> str:
    """The model's shallowest modules, at least a dozen (the blocks a user taps), in depth order."""
    shallow = names
    for depth in range(6):
        shallow = [n for n in names if n.count(".") <= depth]
        if len(shallow) >= 12:
            break
    shown = ", ".join(shallow[:limit]) + (f" (+{len(shallow) - limit} more)" if len(shallow) > limit else "")
    return f"its layers: {shown}; every tappable layer: fovea-ray info --model MODEL --layers"


def bottleneck_layers(model: nn.Module) -> list[str]:
    """Every residual block output of the backbone body (``backbone.body.layer*.*``)."""
    return resolve_layers(model, ["backbone.body.layer*.*"])


def tappable_layers(model: nn.Module, images: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """The layers a :class:`~fovea_ray.taps.Tapper` can tap, with their output shapes.

    One forward pass of ``images`` (B >= 2, so that the batch axis is recognisable) with a
    hook on every module. A layer is tappable when it ran exactly once and returned one
    tensor with one map per image: (B, C, H, W) (for a detection model, inside its
    backbone, the only part that sees whole images), or (B, N, C) / (B, C) for other
    networks. Listed in depth order (the order :func:`resolve_layers` uses), shapes
    without the batch axis.
    """
    from fovea_ray.model.zoo import InputSpec

    names = [name for name, _ in model.named_modules() if name]
    detection = hasattr(model, "transform") and hasattr(model, "backbone")
    if detection:
        names = [n for n in names if n.startswith("backbone.")]
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name: str, module: nn.Module, inputs, output) -> None:
        calls[name] = calls.get(name, 0) + 1
        shapes[name] = tuple(output.shape) if isinstance(output, torch.Tensor) else ()

    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: hook(n, m, i, o)) for n in names]
    try:
        with torch.inference_mode():
            if detection:
                transformed, _ = model.transform(list(images))
                model.backbone(transformed.tensors)
            else:
                spec = (getattr(model, "fovea_ray_info", None) or {}).get("input")
                model(InputSpec.from_dict(spec)(images) if spec else images)
    finally:
        for handle in handles:
            handle.remove()
    batch, kinds = images.shape[0], (4,) if detection else (2, 3, 4)
    out = []
    for name in names:
        shape = shapes.get(name, ())
        if calls.get(name) == 1 and len(shape) in kinds and shape[0] == batch:
            out.append((name, shape[1:]))
    return out
