"""Boundary checks shared by the tests: clear messages for bad ``X``, ``y`` and options."""

from __future__ import annotations

import numpy as np


def check_xy(X, y, *, min_per_class: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as float64 (n, d) and ``y`` as int8 (n,) in {0, 1}, or ValueError saying why."""
    try:
        Xa = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must be a numeric (n_samples, n_features) array: {exc}") from exc
    if Xa.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {Xa.shape}")
    if Xa.shape[1] < 1:
        raise ValueError("X has no feature columns")
    bad = ~np.isfinite(Xa)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"X holds NaN or infinite values in {rows.size} rows (first: row {rows[0]}); drop failed samples first"
        )
    ya = np.asarray(y)
    if ya.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {ya.shape}")
    if ya.shape[0] != Xa.shape[0]:
        raise ValueError(f"X has {Xa.shape[0]} rows but y has {ya.shape[0]} labels")
    if ya.dtype.kind not in "biuf":
        raise ValueError(f"y must hold the labels 0 and 1, got dtype {ya.dtype}")
    if not np.all((ya == 0) | (ya == 1)):
        vals = np.unique(ya[(ya != 0) & (ya != 1)])[:5]
        raise ValueError(f"y must hold only the labels 0 and 1, found {vals.tolist()}")
    yi = ya.astype(np.int8)
    n0, n1 = int(np.sum(yi == 0)), int(np.sum(yi == 1))
    if n0 == 0 or n1 == 0:
        raise ValueError(f"y must contain both classes, got {n0} zeros and {n1} ones")
    if min(n0, n1) < min_per_class:
        raise ValueError(f"need at least {min_per_class} samples per class, got {n0} of class 0 and {n1} of class 1")
    return Xa, yi


def check_fraction(name: str, value: float) -> float:
    v = float(value)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")
    return v


def standardize_columns(X: np.ndarray) -> np.ndarray:
    """Z-score each column with the whole sample's mean and std (no labels involved)."""
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    return (X - mu) / sd
