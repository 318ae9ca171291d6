"""Boundary checks of the statistics: one function per kind of input, one message style.

Each check returns the input in the dtype the computation wants, or raises ValueError
with one line ``<name> must ..., got ...`` (the CLI turns it into one error line).
"""

from __future__ import annotations

import math

import numpy as np


def check_features(X, *, name: str = "X") -> np.ndarray:
    """``X`` as a finite float64 ``(n, d)`` array with ``d >= 1``."""
    try:
        Xa = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric (n_samples, n_features) array: {exc}") from exc
    if Xa.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {Xa.shape}")
    if Xa.shape[1] < 1:
        raise ValueError(f"{name} must have at least one feature column, got shape {Xa.shape}")
    bad = ~np.isfinite(Xa)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{name} must be finite, got NaN or infinite values in {rows.size} rows (first: row {rows[0]}); "
            "drop failed samples first"
        )
    return Xa


def check_labels(y, n: int | None = None, *, name: str = "y") -> np.ndarray:
    """``y`` as int8 ``(n,)`` holding only the labels 0 and 1 (any other value is an error,
    never merged into a class or dropped)."""
    ya = np.asarray(y)
    if ya.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {ya.shape}")
    if n is not None and ya.shape[0] != n:
        raise ValueError(f"{name} must hold one label per sample ({n}), got {ya.shape[0]}")
    if ya.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold the labels 0 and 1, got dtype {ya.dtype}")
    if not np.all((ya == 0) | (ya == 1)):
        vals = np.unique(ya[(ya != 0) & (ya != 1)])[:5]
        raise ValueError(f"{name} must hold only the labels 0 and 1, got {vals.tolist()}")
    return ya.astype(np.int8)


def check_class_counts(y: np.ndarray, min_per_class: int) -> tuple[int, int]:
    """``(n0, n1)``, each at least ``min_per_class``."""
    n0, n1 = int(np.sum(y == 0)), int(np.sum(y == 1))
    if min(n0, n1) < max(1, min_per_class):
        raise ValueError(
            f"y must hold at least {max(1, min_per_class)} samples of each class, got {n0} of 0 and {n1} of 1"
        )
    return n0, n1


def check_xy(X, y, *, min_per_class: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as float64 (n, d) and ``y`` as int8 (n,) in {0, 1}, or ValueError saying why."""
    Xa = check_features(X)
    yi = check_labels(y, Xa.shape[0])
    check_class_counts(yi, min_per_class)
    return Xa, yi


def check_fraction(name: str, value: float) -> float:
    """A number strictly between 0 and 1."""
    v = float(value)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")
    return v


def check_count(name: str, value, *, minimum: int = 0) -> int:
    """A whole number ``>= minimum``."""
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_statistic(name: str, value) -> float:
    """A real number (NaN allowed: callers return NaN for it), never a string or array."""
    v = float(value)
    if math.isinf(v):
        raise ValueError(f"{name} must be finite or NaN, got {value}")
    return v


def check_precision(precision: str) -> str:
    """One of :data:`fovea_ray.names.PRECISIONS`."""
    from fovea_ray.names import PRECISIONS

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision
