"""Networks side by side: paired tests of held-out accuracy on one shared split.

A rejection of H0: P0 = P1 in one network is not a finding by itself, since blur changes
activations even in a network that never learnt anything. The study's question is
answered by comparison: the foveated-trained network against controls of the same
architecture (random weights, trained without foveation), on the *same* samples and the
*same* held-out split. Each network's classifier then predicts every held-out sample, so
the two prediction vectors are paired, and their difference is tested per layer:

* :func:`paired_accuracy_test`: the difference in held-out accuracy with Newcombe's
  hybrid-score interval for paired proportions, and McNemar's exact test on the
  discordant predictions;
* :func:`holm`: Holm's step-down adjustment across one comparison's layers;
* :func:`compare_layers`: both, for every layer two networks share, and the layers where
  the first network separates the types more, or less, than the second;
* :func:`merge_layer`: where resolutions merge, from one network's per-layer p-values.

What the paired test conditions on
----------------------------------
McNemar's test treats the two *fitted* classifiers as fixed and the held-out samples as
the random draws. Its null is that the two fixed classifiers have the same error rate on
the population of held-out samples; it does not account for the randomness of training
(another training split would give other classifiers). This is the test Dietterich
(1998) found to have acceptable type-I error among the single-split tests. The paired
interval conditions the same way. Both are valid here because every held-out sample is
independent of the training split that fitted both classifiers.

References
----------
.. [1] McNemar, Q. (1947). Note on the sampling error of the difference between
   correlated proportions or percentages. Psychometrika 12(2), 153-157.
.. [2] Edwards, A. L. (1948). Note on the "correction for continuity" in testing the
   significance of the difference between correlated proportions. Psychometrika 13.
.. [3] Dietterich, T. G. (1998). Approximate statistical tests for comparing supervised
   classification learning algorithms. Neural Computation 10(7), 1895-1923.
.. [4] Newcombe, R. G. (1998). Improved confidence intervals for the difference between
   binomial proportions based on paired data. Statistics in Medicine 17, 2635-2650
   (method 10).
.. [5] Holm, S. (1979). A simple sequentially rejective multiple test procedure.
   Scandinavian Journal of Statistics 6(2), 65-70.
.. [6] Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate.
   JRSS B 57, 289-300.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "LayerComparison",
    "PairedAccuracyResult",
    "compare_layers",
    "holm",
    "merge_layer",
    "paired_accuracy_test",
]


def _check_predictions(y_true, pred_a, pred_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three held-out vectors as int8 arrays of one length over {0, 1}, or ValueError."""
    arrays = []
    for name, v in (("y_true", y_true), ("pred_a", pred_a), ("pred_b", pred_b)):
        a = np.asarray(v)
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
        if a.dtype.kind not in "biuf" or not np.all((a == 0) | (a == 1)):
            bad = np.unique(a[(a != 0) & (a != 1)])[:5] if a.dtype.kind in "biuf" else a.dtype
            raise ValueError(f"{name} must hold only the labels 0 and 1, found {bad!s}")
        arrays.append(a.astype(np.int8))
    n = {a.shape[0] for a in arrays}
    if len(n) != 1:
        raise ValueError(f"y_true, pred_a and pred_b differ in length: {[a.shape[0] for a in arrays]}")
    if arrays[0].shape[0] == 0:
        raise ValueError("no held-out samples to compare")
    return arrays[0], arrays[1], arrays[2]


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion."""
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _newcombe_paired_interval(both: int, only_a: int, only_b: int, neither: int, level: float) -> tuple[float, float]:
    """Newcombe's (1998) method 10: hybrid score interval for ``p_a - p_b`` on paired data.

    ``both``, ``only_a``, ``only_b``, ``neither`` count the held-out samples that both, only
    the first, only the second, or neither classifier got right.
    """
    n = both + only_a + only_b + neither
    z = float(stats.norm.ppf(0.5 + level / 2))
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    l_a, u_a = _wilson(both + only_a, n, z)
    l_b, u_b = _wilson(both + only_b, n, z)
    # Newcombe's phi*: the correlation of the two correctness indicators, shrunk towards 0
    # by a continuity correction when positive, and 0 when a margin is empty.
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    if margins == 0:
        phi = 0.0
    elif cross > 0:
        phi = max(cross - n / 2, 0.0) / math.sqrt(margins)
    else:
        phi = cross / math.sqrt(margins)
    delta = p_a - p_b
    low = delta - math.sqrt(max((p_a - l_a) ** 2 - 2 * phi * (p_a - l_a) * (u_b - p_b) + (u_b - p_b) ** 2, 0.0))
    high = delta + math.sqrt(max((u_a - p_a) ** 2 - 2 * phi * (u_a - p_a) * (p_b - l_b) + (p_b - l_b) ** 2, 0.0))
    return max(-1.0, low), min(1.0, high)


@dataclass(frozen=True)
class PairedAccuracyResult:
    """Result of :func:`paired_accuracy_test` (scipy.stats style).

    Attributes
    ----------
    statistic : float
        ``accuracy_a - accuracy_b`` on the held-out samples.
    pvalue : float
        McNemar's exact two-sided p-value: ``only_a`` out of ``only_a + only_b`` discordant
        samples against Binomial(., 1/2); 1 when there are no discordant samples.
    accuracy_a, accuracy_b : float
        Held-out accuracies of the two classifiers.
    ci_low, ci_high : float
        Newcombe's paired interval for the difference at ``confidence_level``.
    n, both, only_a, only_b, neither : int
        Held-out count, and how many samples both, only the first, only the second, or
        neither classifier classified correctly.
    confidence_level : float
    """

    statistic: float
    pvalue: float
    accuracy_a: float
    accuracy_b: float
    ci_low: float
    ci_high: float
    n: int
    both: int
    only_a: int
    only_b: int
    neither: int
    confidence_level: float

    @property
    def discordant(self) -> int:
        """Held-out samples on which exactly one classifier is right."""
        return self.only_a + self.only_b

    def to_record(self) -> dict[str, Any]:
        """A JSON-able record (the row of ``results.json``'s comparisons table)."""
        return {
            "accuracy_difference": self.statistic,
            "pvalue": self.pvalue,
            "accuracy_a": self.accuracy_a,
            "accuracy_b": self.accuracy_b,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence_level": self.confidence_level,
            "n_test": self.n,
            "both_correct": self.both,
            "only_a_correct": self.only_a,
            "only_b_correct": self.only_b,
            "neither_correct": self.neither,
        }


def paired_accuracy_test(y_true, pred_a, pred_b, *, confidence_level: float = 0.95) -> PairedAccuracyResult:
    """Test whether two fitted classifiers differ in accuracy on the same held-out samples.

    Parameters
    ----------
    y_true : array_like of {0, 1}, shape (n,)
        The held-out labels (the type: 1 sharp, 0 blurred).
    pred_a, pred_b : array_like of {0, 1}, shape (n,)
        The two classifiers' predictions for the same held-out samples, in the same order.
    confidence_level : float
        Level of the paired interval for the accuracy difference.

    Returns
    -------
    PairedAccuracyResult
        ``statistic`` is ``accuracy_a - accuracy_b``; ``pvalue`` is McNemar's exact test.

    Notes
    -----
    Conditional on the fitted classifiers (see the module docstring): the held-out samples
    are the random draws. McNemar's exact test is the binomial test of the discordant
    counts [1]_ [3]_; the interval is Newcombe's hybrid score interval (method 10) [4]_,
    which keeps close to nominal coverage where the Wald interval does not (small n,
    accuracies near 0 or 1).

    References
    ----------
    .. [1] McNemar (1947), Psychometrika 12, 153-157.
    .. [3] Dietterich (1998), Neural Computation 10(7), 1895-1923.
    .. [4] Newcombe (1998), Statistics in Medicine 17, 2635-2650.
    """
    y, a, b = _check_predictions(y_true, pred_a, pred_b)
    if not 0.0 < float(confidence_level) < 1.0:
        raise ValueError(f"confidence_level must lie strictly between 0 and 1, got {confidence_level}")
    right_a, right_b = a == y, b == y
    both = int(np.sum(right_a & right_b))
    only_a = int(np.sum(right_a & ~right_b))
    only_b = int(np.sum(~right_a & right_b))
    neither = int(y.size - both - only_a - only_b)
    discordant = only_a + only_b
    pvalue = 1.0 if discordant == 0 else float(stats.binomtest(only_a, discordant, 0.5).pvalue)
    low, high = _newcombe_paired_interval(both, only_a, only_b, neither, float(confidence_level))
    n = int(y.size)
    return PairedAccuracyResult(
        statistic=(only_a - only_b) / n,
        pvalue=min(pvalue, 1.0),
        accuracy_a=(both + only_a) / n,
        accuracy_b=(both + only_b) / n,
        ci_low=low,
        ci_high=high,
        n=n,
        both=both,
        only_a=only_a,
        only_b=only_b,
        neither=neither,
        confidence_level=float(confidence_level),
    )


def _check_pvalues(pvalues) -> np.ndarray:
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be 1-D, got shape {p.shape}")
    if np.any(np.isnan(p)):
        raise ValueError("p-values hold NaN; leave skipped tests out of the family")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    return p


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values, controlling the family-wise error rate [5]_.

    ``p_adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` over the sorted p-values, the
    same as ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]``. Rejecting
    where ``p_adj <= alpha`` rejects a true null anywhere in the family with probability
    at most ``alpha``, under any dependence between the tests.

    Parameters
    ----------
    pvalues : array_like, shape (m,)

    Returns
    -------
    ndarray, shape (m,)
        Adjusted p-values in the input order; empty for an empty input.

    References
    ----------
    .. [5] Holm (1979), Scandinavian Journal of Statistics 6(2), 65-70.
    """
    p = _check_pvalues(pvalues)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = np.minimum((m - np.arange(m)) * p[order], 1.0)
    out = np.empty(m)
    out[order] = np.maximum.accumulate(scaled)
    return out


@dataclass(frozen=True)
class LayerComparison:
    """Result of :func:`compare_layers`: one pair of networks over the layers they share.

    Attributes
    ----------
    network_a, network_b : str
        The two networks (``a`` is usually the trained one, ``b`` its control).
    layers : tuple of str
        The shared layers, in depth order.
    results : tuple of PairedAccuracyResult
        One per layer.
    pvalues_holm : tuple of float
        Holm-adjusted McNemar p-values across ``layers``.
    alpha : float
    """

    network_a: str
    network_b: str
    layers: tuple[str, ...]
    results: tuple[PairedAccuracyResult, ...]
    pvalues_holm: tuple[float, ...]
    alpha: float

    @property
    def different(self) -> tuple[str, ...]:
        """Layers where the two networks' accuracies differ (Holm-adjusted p <= alpha)."""
        return tuple(layer for layer, q in zip(self.layers, self.pvalues_holm) if q <= self.alpha)

    @property
    def a_separates_more(self) -> tuple[str, ...]:
        """Layers where network ``a`` separates the types better than ``b``."""
        return tuple(
            layer
            for layer, r, q in zip(self.layers, self.results, self.pvalues_holm)
            if q <= self.alpha and r.statistic > 0
        )

    @property
    def a_separates_less(self) -> tuple[str, ...]:
        """Layers where ``a`` separates them worse: where ``a``'s training built invariance."""
        return tuple(
            layer
            for layer, r, q in zip(self.layers, self.results, self.pvalues_holm)
            if q <= self.alpha and r.statistic < 0
        )

    @property
    def undecidable(self) -> tuple[str, ...]:
        """Layers whose McNemar test cannot reach Holm's smallest threshold ``alpha / m``:
        too few held-out samples on which the two classifiers disagree (the exact test's
        smallest p-value is ``2 * 0.5**N`` on ``N`` discordant samples). "Not different"
        there is not evidence of sameness."""
        from fovea_ray.stats.decision import mcnemar_smallest_pvalue

        m = max(len(self.layers), 1)
        return tuple(
            layer
            for layer, r in zip(self.layers, self.results)
            if mcnemar_smallest_pvalue(r.discordant) > self.alpha / m * (1 + 1e-12)
        )

    def to_records(self) -> list[dict[str, Any]]:
        """One record per layer for ``results.json``'s comparisons table."""
        from fovea_ray.stats.decision import mcnemar_smallest_pvalue

        m = max(len(self.layers), 1)
        return [
            {
                "network_a": self.network_a,
                "network_b": self.network_b,
                "layer": layer,
                **r.to_record(),
                "pvalue_holm": q,
                "different": bool(q <= self.alpha),
                "smallest_p": mcnemar_smallest_pvalue(r.discordant),
                "decidable": bool(mcnemar_smallest_pvalue(r.discordant) <= self.alpha / m * (1 + 1e-12)),
            }
            for layer, r, q in zip(self.layers, self.results, self.pvalues_holm)
        ]


def compare_layers(
    y_true,
    predictions_a: Mapping[str, Any],
    predictions_b: Mapping[str, Any],
    *,
    network_a: str = "a",
    network_b: str = "b",
    layers: Sequence[str] | None = None,
    alpha: float = 0.05,
    confidence_level: float = 0.95,
) -> LayerComparison:
    """Paired accuracy tests at every layer two networks share, Holm-adjusted across them.

    Parameters
    ----------
    y_true : array_like of {0, 1}, shape (n,)
        Held-out labels of the split both networks were fitted and tested on.
    predictions_a, predictions_b : mapping of str to array_like, shape (n,)
        Per layer, each network's held-out predictions for the same samples.
    network_a, network_b : str
        Names for the records.
    layers : sequence of str, optional
        The layers to compare, in depth order. Default: the layers of ``predictions_a``
        (in its order) that ``predictions_b`` also has.
    alpha : float
        Family-wise level for calling a layer different.
    confidence_level : float
        Level of each layer's paired interval (not adjusted for multiplicity).

    Returns
    -------
    LayerComparison
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if layers is None:
        layers = [name for name in predictions_a if name in predictions_b]
    layers = tuple(layers)
    missing = [name for name in layers if name not in predictions_a or name not in predictions_b]
    if missing:
        raise ValueError(f"layer {missing[0]!r} is not in both networks' predictions")
    if not layers:
        raise ValueError(f"networks {network_a!r} and {network_b!r} share no layer")
    results = tuple(
        paired_accuracy_test(y_true, predictions_a[name], predictions_b[name], confidence_level=confidence_level)
        for name in layers
    )
    adjusted = holm([r.pvalue for r in results])
    return LayerComparison(
        network_a=network_a,
        network_b=network_b,
        layers=layers,
        results=results,
        pvalues_holm=tuple(float(q) for q in adjusted),
        alpha=float(alpha),
    )


def merge_layer(layers: Sequence[str], pvalues, *, alpha: float = 0.05) -> str | None:
    """Where resolutions merge: the shallowest layer from which no deeper layer rejects H0.

    H0 (P0 = P1, type 1 and type 0 indistinguishable) is tested at every layer; the
    p-values are Benjamini-Hochberg adjusted across the layers [6]_. The merge layer is
    the first layer after the deepest rejection: from it on, the network's code no
    longer tells sharp from blurred objects of a kind.

    Parameters
    ----------
    layers : sequence of str
        Layer names in depth order.
    pvalues : array_like, shape (len(layers),)
        One H0 p-value per layer (e.g. each layer's permutation p-value).
    alpha : float
        FDR level.

    Returns
    -------
    str or None
        The merge layer; the first layer when no layer rejects; None when the deepest
        layer still rejects (the types stay separate to the end).

    References
    ----------
    .. [6] Benjamini & Hochberg (1995), JRSS B 57, 289-300.
    """
    p = _check_pvalues(pvalues)
    if p.size != len(layers):
        raise ValueError(f"{len(layers)} layers but {p.size} p-values")
    if p.size == 0:
        return None
    q = np.asarray(stats.false_discovery_control(p, method="bh")) if p.size > 1 else p
    rejected = np.flatnonzero(q <= alpha)
    if rejected.size == 0:
        return layers[0]
    deepest = int(rejected[-1])
    return layers[deepest + 1] if deepest + 1 < len(layers) else None
