"""Resolve layer names and patterns to a model's modules, in network depth order."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from fnmatch import fnmatchcase

from torch import nn

__all__ = ["bottleneck_layers", "resolve_layers"]

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
            raise ValueError(f"layer {pattern!r} matches no module of the model{hint}")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def bottleneck_layers(model: nn.Module) -> list[str]:
    """Every residual block output of the backbone body (``backbone.body.layer*.*``)."""
    return resolve_layers(model, ["backbone.body.layer*.*"])
