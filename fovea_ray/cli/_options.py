"""Option parsing shared by several commands."""

from __future__ import annotations

from collections.abc import Sequence

#: Every command's ``--address`` help (one wording; :func:`fovea_ray.cluster.connect` does what it says).
ADDRESS_HELP = (
    "Ray cluster to join (ray://host:10001, host:6379 or auto). Default: RAY_ADDRESS when set, else a "
    "new local Ray; a cluster started with `ray start` is joined only when named here or in RAY_ADDRESS."
)


def split_list(values: Sequence[str] | None) -> list[str] | None:
    """``--layers a,b --layers c`` -> ["a", "b", "c"]; nothing given -> None (the default)."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


def permutation_count(value: str | None) -> int | str | None:
    """A ``--permutations``-style flag: None (unset), ``"auto"``, or a whole number; anything
    else is passed on as given for the config to refuse in one line."""
    if value is None:
        return None
    v = str(value).strip().lower()
    return int(v) if v.isdigit() else v
