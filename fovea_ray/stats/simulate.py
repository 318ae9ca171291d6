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


def _pvalues(
    n_per_class, channels, seeds, shift, shifted_channels, scale_decades, classifier, P, tests
) -> dict[str, np.ndarray]:
    """The deciding p-values of the simulated data sets ``seeds``: ``{test: (len(seeds),)}``.

    Each data set is split 50/50 (seeded by its seed) and fitted once; the batched
    classifiers fit all data sets of a chunk in one call of the solver (one design per
    data set, standardised with its own training rows), the study's one at a time.
    """
    from fovea_ray.stats.c2st import c2st_split
    from fovea_ray.stats.classifier import ClassifierSpec, fit_split, standardize_with
    from fovea_ray.stats.kim import kim_asymptotic_test, permutation_pvalue
    from fovea_ray.stats.permutation import full_permutation_many, half_permutation_null
    from fovea_ray.stats.solver import fit_logistic_batched, prepare_design

    spec = ClassifierSpec.resolve(classifier)
    groups = np.tile(np.arange(channels), 2)
    data = [
        activation_like(
            2 * n_per_class,
            channels,
            int(sd),
            shift=shift,
            shifted_channels=shifted_channels,
            scale_decades=scale_decades,
        )
        for sd in seeds
    ]
    splits = [c2st_split(y, 0.5, int(sd)) for (_, y), sd in zip(data, seeds)]
    if spec.batched:
        trains = np.stack([np.sort(tr) for tr, _ in splits])
        feats = np.stack(
            [standardize_with(X, tr, groups) if spec.standardizes else X for (X, _), tr in zip(data, trains)]
        )
        Y = np.stack([y for _, y in data])[:, :, None]
        design = prepare_design(feats, C=spec.C, curvature_rows=int(trains.shape[1]), basis_rows=trains)
        fit = fit_logistic_batched(design, Y, train_rows=trains, precision="float64")
        decisions = [fit.decision[g, :, 0] for g in range(len(seeds))]
    else:
        decisions = [fit_split(X, y, tr, spec, groups).decision for (X, y), (tr, _) in zip(data, splits)]
    out: dict[str, list[float]] = {t: [] for t in tests}
    for (_, y), (_, test), decision, sd in zip(data, splits, decisions, seeds):
        pred = (decision[test] > 0).astype(np.int8)
        if "asymptotic" in tests:
            cm = np.zeros((2, 2), dtype=np.int64)
            np.add.at(cm, (y[test], pred), 1)
            out["asymptotic"].append(kim_asymptotic_test(cm)[1])
        if "half" in tests:
            acc = float(np.mean(pred == y[test]))
            out["half"].append(permutation_pvalue(acc, half_permutation_null(y[test], pred, P, int(sd))))
    if "full" in tests:
        masks = np.zeros((len(seeds), 2 * n_per_class), dtype=bool)
        for g, (tr, _) in enumerate(splits):
            masks[g, tr] = True
        obs, null = full_permutation_many(
            np.stack([X for X, _ in data]),
            np.stack([y for _, y in data]),
            masks,
            n_permutations=P,
            seeds=[int(sd) for sd in seeds],
            test_size=0.5,
            classifier=spec.name,
            groups=groups,
            precision="float64",
        )
        out["full"] = [permutation_pvalue(o, nl) for o, nl in zip(obs, null)]
    return {t: np.asarray(v) for t, v in out.items()}


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
    chunk_size: int = 100,
) -> dict[str, float]:
    """Rejection rates of the deciding tests over simulated data sets (size under
    ``shift = 0``, power otherwise), for the checks of :mod:`fovea_ray.stats.decision`.

    Each data set is :func:`activation_like` (``d = 2 * channels``, channel scales over
    ``scale_decades`` decades), split 50/50 and fitted once with ``classifier``. With
    ``n_layers = m > 1`` every data set is a network of ``m`` independent layers, each
    decided by the tests at ``P = m/alpha - 1`` half (or full) permutations, and the
    rates are those of the across-layer calls: BH rejects any layer (``"bh_<test>"``), and
    the merge layer is not the first layer (``"merge_<test>"``; under the global null both
    are false calls). ``chunk_size`` data sets are fitted in one batched call (memory:
    about ``chunk_size * 2 * n_per_class * 2 * channels * 16`` bytes). Returns ``{name: rate}``.
    """
    from scipy import stats as sps

    from fovea_ray.stats.compare import merge_layer
    from fovea_ray.stats.decision import required_permutations

    P = required_permutations(alpha, n_layers)
    seeds = np.array([seed + 1000 * i + k for i in range(n_datasets) for k in range(n_layers)])
    per_test: dict[str, list[np.ndarray]] = {t: [] for t in tests}
    for chunk in np.array_split(seeds, max(1, len(seeds) // chunk_size)):
        got = _pvalues(n_per_class, channels, chunk, shift, shifted_channels, scale_decades, classifier, P, tests)
        for t in tests:
            per_test[t].append(got[t])
    hits: dict[str, int] = {}
    names = [f"L{k}" for k in range(n_layers)]
    for t in tests:
        p_all = np.concatenate(per_test[t]).reshape(n_datasets, n_layers)
        if n_layers == 1:
            hits[t] = int((p_all[:, 0] <= alpha).sum())
            continue
        q = np.stack([sps.false_discovery_control(p, method="bh") for p in p_all])
        hits[f"bh_{t}"] = int((q <= alpha).any(axis=1).sum())
        hits[f"merge_{t}"] = sum(int(merge_layer(names, p, alpha=alpha) != names[0]) for p in p_all)
    return {k: v / n_datasets for k, v in hits.items()}
