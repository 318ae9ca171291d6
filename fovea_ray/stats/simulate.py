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

__all__ = ["activation_like", "decision_rates"]


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


def _one_dataset(n_per_class, channels, seed, shift, shifted_channels, scale_decades, alpha, classifier, P_half, tests):
    """The deciding p-values of one simulated data set: ``{test: p}``."""
    from fovea_ray.stats.c2st import c2st_split
    from fovea_ray.stats.classifier import ClassifierSpec, fit_split
    from fovea_ray.stats.kim import kim_asymptotic_test, permutation_pvalue
    from fovea_ray.stats.permutation import full_permutation_null, half_permutation_null

    X, y = activation_like(
        2 * n_per_class, channels, seed, shift=shift, shifted_channels=shifted_channels, scale_decades=scale_decades
    )
    groups = np.tile(np.arange(channels), 2)
    train, test = c2st_split(y, 0.5, seed)
    spec = ClassifierSpec.resolve(classifier)
    fit = fit_split(X, y, train, spec, groups)
    pred = fit.predictions(test)
    cm = np.zeros((2, 2), dtype=np.int64)
    np.add.at(cm, (y[test], pred), 1)
    out = {}
    if "asymptotic" in tests:
        out["asymptotic"] = kim_asymptotic_test(cm)[1]
    if "half" in tests:
        acc = float(np.mean(pred == y[test]))
        out["half"] = permutation_pvalue(acc, half_permutation_null(y[test], pred, P_half, seed))
    if "full" in tests:
        acc = float(np.mean(pred == y[test]))
        full = full_permutation_null(
            X,
            y,
            train,
            n_permutations=P_half,
            seed=seed,
            test_size=0.5,
            classifier=spec,
            groups=groups,
            observed=acc,
        )
        out["full"] = full.pvalue
    return out


def decision_rates(
    *,
    n_per_class: int,
    channels: int = 512,
    n_datasets: int = 300,
    alpha: float = 0.05,
    shift: float = 0.0,
    shifted_channels: int = 32,
    scale_decades: float | None = 5.0,
    classifier: str = "standardized",
    tests: tuple[str, ...] = ("asymptotic", "half"),
    n_layers: int = 1,
    seed: int = 0,
) -> dict[str, float]:
    """Rejection rates of the deciding tests over simulated data sets (size under
    ``shift = 0``, power otherwise), for the checks of :mod:`fovea_ray.stats.decision`.

    Each data set is :func:`activation_like` (``d = 2 * channels``, channel scales over
    ``scale_decades`` decades), split 50/50 and fitted once with ``classifier``. With
    ``n_layers = m > 1`` every data set is a network of ``m`` independent layers, each
    decided by the tests at ``P = m/alpha - 1`` half (or full) permutations, and the
    rates are those of the across-layer calls: BH rejects any layer (``"bh_<test>"``), and
    the merge layer is not the first layer (``"merge_<test>"``; under the global null both
    are false calls). Returns ``{name: rate}``.
    """
    from scipy import stats as sps

    from fovea_ray.stats.compare import merge_layer
    from fovea_ray.stats.decision import required_permutations

    P = required_permutations(alpha, n_layers)
    hits: dict[str, int] = {}
    for i in range(n_datasets):
        per_layer = [
            _one_dataset(
                n_per_class,
                channels,
                seed + 1000 * i + k,
                shift,
                shifted_channels,
                scale_decades,
                alpha,
                classifier,
                P,
                tests,
            )
            for k in range(n_layers)
        ]
        for t in tests:
            p = np.array([layer[t] for layer in per_layer])
            if n_layers == 1:
                hits[t] = hits.get(t, 0) + int(p[0] <= alpha)
                continue
            q = sps.false_discovery_control(p, method="bh")
            names = [f"L{k}" for k in range(n_layers)]
            hits[f"bh_{t}"] = hits.get(f"bh_{t}", 0) + int((q <= alpha).any())
            hits[f"merge_{t}"] = hits.get(f"merge_{t}", 0) + int(merge_layer(names, p, alpha=alpha) != names[0])
    return {k: v / n_datasets for k, v in hits.items()}
