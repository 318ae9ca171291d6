"""Option parsing shared by several commands."""

from __future__ import annotations

from collections.abc import Sequence


def split_list(values: Sequence[str] | None) -> list[str] | None:
    """``--layers a,b --layers c`` -> ["a", "b", "c"]; nothing given -> None (the default)."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None
