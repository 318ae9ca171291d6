"""Paired network comparisons: agreement with statsmodels/scipy, calibration and power by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from fovea_ray.stats.compare import compare_layers, holm, merge_layer, paired_accuracy_test


def _pairs(both: int, only_a: int, only_b: int, neither: int):
    """Held-out labels and two prediction vectors with the given correctness counts."""
    n = both + only_a + only_b + neither
    y = np.arange(n) % 2
    right_a = np.r_[np.ones(both + only_a), np.zeros(only_b + neither)].astype(bool)
    right_b = np.r_[np.ones(both), np.zeros(only_a), np.ones(only_b), np.zeros(neither)].astype(bool)
    return y, np.where(right_a, y, 1 - y), np.where(right_b, y, 1 - y)


def test_mcnemar_exact_matches_the_binomial_and_statsmodels():
    y, a, b = _pairs(40, 12, 3, 5)
    r = paired_accuracy_test(y, a, b)
    assert (r.both, r.only_a, r.only_b, r.neither, r.n) == (40, 12, 3, 5, 60)
    assert r.statistic == pytest.approx((12 - 3) / 60)
    assert r.accuracy_a == pytest.approx(52 / 60) and r.accuracy_b == pytest.approx(43 / 60)
    by_hand = min(1.0, 2 * stats.binom.cdf(3, 15, 0.5))
    assert r.pvalue == pytest.approx(by_hand, rel=1e-12)
    sm = pytest.importorskip("statsmodels.stats.contingency_tables")
    table = [[r.both, r.only_a], [r.only_b, r.neither]]
    assert r.pvalue == pytest.approx(sm.mcnemar(table, exact=True).pvalue, rel=1e-10)


def test_no_discordant_samples_gives_p_one_and_a_zero_difference():
    y, a, b = _pairs(30, 0, 0, 10)
    r = paired_accuracy_test(y, a, b)
    assert r.pvalue == 1.0 and r.statistic == 0.0
    assert r.ci_low <= 0.0 <= r.ci_high


def test_newcombe_interval_covers_at_nominal_level():
    # Paired, correlated correctness indicators with a true difference of 0.1.
    rng = np.random.default_rng(3)
    probs = np.array([0.55, 0.2, 0.1, 0.15])  # both, only a, only b, neither
    delta = probs[1] - probs[2]
    n, reps, covered = 80, 2000, 0
    for _ in range(reps):
        counts = rng.multinomial(n, probs)
        r = paired_accuracy_test(*_pairs(*counts))
        covered += r.ci_low <= delta <= r.ci_high
        assert r.ci_low <= r.statistic <= r.ci_high
    coverage = covered / reps
    # Newcombe (1998) reports method 10's coverage close to, and rarely far below, nominal.
    assert 0.93 <= coverage <= 0.98, coverage


def test_holm_agrees_with_statsmodels_and_the_definition():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    expected = np.array([0.04, 0.09, 0.09, 0.025, 0.5])  # sorted: .005*5, .01*4, .03*3, .04*2 -> max-accumulated
    np.testing.assert_allclose(holm(p), expected)
    mt = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(size=rng.integers(1, 30)) ** 3
        np.testing.assert_allclose(holm(q), mt.multipletests(q, method="holm")[1], rtol=1e-12)
    assert holm([]).shape == (0,)


@pytest.mark.parametrize(
    "bad, message",
    [([0.1, np.nan], "NaN"), ([0.1, 1.5], r"\[0, 1\]"), ([[0.1]], "1-D")],
)
def test_holm_refuses_bad_pvalues(bad, message):
    with pytest.raises(ValueError, match=message):
        holm(bad)


def test_paired_test_refuses_bad_input():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="pred_a must hold only the labels 0 and 1"):
        paired_accuracy_test(y, [0, 2, 0, 1], y)
    with pytest.raises(ValueError, match="differ in length"):
        paired_accuracy_test(y, y[:3], y)
    with pytest.raises(ValueError, match="no held-out samples"):
        paired_accuracy_test([], [], [])


def test_merge_layer():
    layers = ["l1", "l2", "l3", "l4"]
    assert merge_layer(layers, [1e-6, 1e-5, 0.6, 0.9]) == "l3"
    assert merge_layer(layers, [1e-6, 0.7, 1e-5, 0.9]) == "l4"  # a late rejection moves the merge deeper
    assert merge_layer(layers, [1e-6, 1e-6, 1e-6, 1e-6]) is None  # separate to the end
    assert merge_layer(layers, [0.5, 0.6, 0.7, 0.9]) == "l1"
    with pytest.raises(ValueError, match="4 layers but 3 p-values"):
        merge_layer(layers, [0.1, 0.2, 0.3])


def test_compare_layers_names_the_direction():
    y, a, b = _pairs(20, 30, 2, 8)
    y2, a2, b2 = _pairs(20, 2, 30, 8)
    cmp = compare_layers(
        np.r_[y], {"l1": a, "l2": a2[: y.size]}, {"l1": b, "l2": b2[: y.size]}, network_a="trained", network_b="random"
    )
    assert cmp.layers == ("l1", "l2")
    assert cmp.a_separates_more == ("l1",) and cmp.a_separates_less == ("l2",)
    rec = cmp.to_records()
    assert [r["layer"] for r in rec] == ["l1", "l2"] and rec[0]["network_a"] == "trained"
    assert rec[0]["pvalue_holm"] >= rec[0]["pvalue"]
    with pytest.raises(ValueError, match="share no layer"):
        compare_layers(y, {"l1": a}, {"l9": b})


# --- calibration and power by simulation -------------------------------------------------

N_LAYERS, DIM = 4, 8


def _simulate(rng, n_per_class: int, extra_shift: float):
    """Held-out labels and per-layer predictions of two 'networks' on one shared split.

    Both networks see the same samples: a shared latent code per sample (as two networks
    see the same images), plus each network's own noise, so their features are
    correlated. Under H0 both come from one distribution; ``extra_shift`` adds separation
    to network a's features at layer 2 only.
    """
    y = np.r_[np.zeros(n_per_class), np.ones(n_per_class)].astype(np.int8)
    n = y.size
    latent = rng.standard_normal((n, DIM)) + 0.35 * y[:, None]
    test = np.zeros(n, bool)
    test[rng.permutation(np.flatnonzero(y == 0))[: n_per_class // 2]] = True
    test[rng.permutation(np.flatnonzero(y == 1))[: n_per_class // 2]] = True
    preds = {"a": {}, "b": {}}
    for net in ("a", "b"):
        for layer in range(N_LAYERS):
            X = latent + rng.standard_normal((n, DIM))
            if net == "a" and layer == 2:
                X = X + extra_shift * y[:, None]
            clf = LogisticRegression(C=1.0, max_iter=500).fit(X[~test], y[~test])
            preds[net][f"layer{layer}"] = clf.predict(X[test])
    return y[test], preds["a"], preds["b"]


def test_comparison_is_calibrated_family_wise_under_the_null():
    rng = np.random.default_rng(2026)
    alpha, n_sets = 0.05, 300
    called = 0
    for _ in range(n_sets):
        y, pa, pb = _simulate(rng, 100, 0.0)
        called += bool(compare_layers(y, pa, pb, alpha=alpha).different)
    upper = stats.binom.ppf(0.995, n_sets, alpha) / n_sets  # upper limit of the 99% band of alpha
    rate = called / n_sets
    assert rate <= upper, (rate, upper)


def test_comparison_power_rises_with_n():
    rng = np.random.default_rng(7)
    power = []
    for n_per_class in (40, 120, 360):
        hits = 0
        for _ in range(60):
            y, pa, pb = _simulate(rng, n_per_class, 0.5)
            cmp = compare_layers(y, pa, pb, alpha=0.05)
            hits += "layer2" in cmp.a_separates_more
        power.append(hits / 60)
    assert power[0] < power[1] < power[2], power
    assert power[2] >= 0.8, power
