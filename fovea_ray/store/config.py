"""Comparing a run's canonical config with the one a store was made with.

A store may only be resumed by the run that made it: the same manifest (by checksum),
network (arch, weights checksum), layers, statistics, canvas, foveation parameters,
seed and chunk size. Anything else would mix two experiments in one table.
"""

from __future__ import annotations

import json
from typing import Any


def _canonical(value: Any) -> Any:
    """JSON round trip, so tuples/lists and numpy scalars compare as stored attrs do."""
    return json.loads(json.dumps(value, sort_keys=True, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def diff_configs(stored: dict, requested: dict, *, prefix: str = "") -> list[str]:
    """Human-readable differences between two config dicts (empty when they agree).

    Each entry reads ``"key: store has X, this run has Y"``; nested dicts are compared
    key by key with dotted names.
    """
    stored, requested = _canonical(stored), _canonical(requested)
    out: list[str] = []
    for key in sorted(set(stored) | set(requested)):
        name = f"{prefix}{key}"
        a, b = stored.get(key, "<absent>"), requested.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(diff_configs(a, b, prefix=f"{name}."))
        elif a != b:
            out.append(f"{name}: store has {_short(a)}, this run has {_short(b)}")
    return out


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
