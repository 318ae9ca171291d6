"""Simulated activation statistics, for benchmarks and checks of the tests' size and power.

Per-channel spatial reductions of a CNN layer are non-negative-ish, right-skewed, with
channel scales spread over an order of magnitude, and correlated through image-level
factors (contrast, object size). :func:`activation_like` draws such data: per channel a
log-normal scale and a gamma shape; a shared gamma "contrast" factor per sample
multiplies every channel; the "max" statistic is the "mean" times a gamma-distributed
peak factor. Columns are statistic-major (all means, then all maxima), as in the study.
"""

from __future__ import annotations

import numpy as np

__all__ = ["activation_like"]


def activation_like(
    n: int,
    channels: int,
    seed: int = 0,
    *,
    shift: float = 0.0,
    shifted_channels: int = 0,
    scale: float = 1.0,
    scale_decades: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(X (n, 2 * channels), y (n,))`` with ``n // 2`` samples of each type.

    Parameters
    ----------
    n, channels : int
        samples and channels (d = 2 * channels: mean and max).
    seed : int, optional
        numpy seed.
    shift : float, optional
        type-1 samples get their max statistic multiplied by ``1 + shift`` in the
        first ``shifted_channels`` channels (0: both types from one distribution).
    scale : float, optional
        overall scale of the values (the regularisation's relative strength).
    scale_decades : float, optional
        spread the channel scales log-uniformly over ``10**0 .. 10**scale_decades``
        (real layers span up to five decades: column SDs from ~1 to ~27,000 at
        layer4.2 of an R101) instead of the default log-normal (SD 0.75 in log).
        The shifted channels are then every ``channels // shifted_channels``-th
        channel, so the signal sits at every scale.
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array([0, 1], dtype=np.int8), [n - n // 2, n // 2])
    ch_scale = np.exp(rng.normal(0.0, 0.75, size=channels))
    shifted = np.arange(min(shifted_channels, channels))
    if scale_decades is not None:
        ch_scale = 10.0 ** rng.uniform(0.0, float(scale_decades), size=channels)
        if shifted_channels:
            shifted = np.arange(0, channels, max(channels // shifted_channels, 1))[:shifted_channels]
    shape = rng.uniform(1.0, 4.0, size=channels)
    contrast = rng.gamma(2.0, 0.5, size=(n, 1))
    mean = rng.gamma(shape, ch_scale, size=(n, channels)) * (0.5 + contrast)
    mx = mean * (2.0 + rng.gamma(2.0, 1.0, size=(n, channels)))
    if shift and shifted_channels:
        mx[np.ix_(y == 1, shifted)] *= 1.0 + shift
    return scale * np.concatenate([mean, mx], axis=1), y
