"""Score tests, MMD and per-channel selectivity against scipy / numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from fovea_ray.stats import (
    benjamini_hochberg,
    channel_selectivity,
    friedman_score_tests,
    mmd_test,
    odds_ratio_test,
    score_normality,
)
from fovea_ray.stats.mmd import gaussian_kernel, median_bandwidth


def test_friedman_tests_are_scipys_one_sided_tests():
    rng = np.random.default_rng(0)
    s = np.r_[rng.normal(0, 1, 80), rng.normal(0.6, 1, 70)]
    y = np.r_[np.zeros(80), np.ones(70)]
    out = friedman_score_tests(s, y, alpha=0.05)
    mw = stats.mannwhitneyu(s[y == 1], s[y == 0], alternative="greater")
    ks = stats.ks_2samp(s[y == 1], s[y == 0], alternative="less")
    assert out["mann_whitney"].statistic == mw.statistic and out["mann_whitney"].pvalue == mw.pvalue
    assert out["kolmogorov_smirnov"].pvalue == ks.pvalue
    assert out["mann_whitney"].details["auc"] == pytest.approx(mw.statistic / (70 * 80))
    assert out["mann_whitney"].reject and out["kolmogorov_smirnov"].reject
    # Reversed groups: the one-sided tests do not reject.
    rev = friedman_score_tests(-s, y, alpha=0.05)
    assert not rev["mann_whitney"].reject and not rev["kolmogorov_smirnov"].reject
    skipped = friedman_score_tests(s[:81], y[:81])
    assert skipped["mann_whitney"].skipped and "1 and 80" in skipped["mann_whitney"].reason


def test_normality_reports_s2_plus_k2():
    rng = np.random.default_rng(1)
    bimodal = np.r_[rng.normal(-3, 1, 500), rng.normal(3, 1, 500)]
    res = score_normality(bimodal)
    ref = stats.normaltest(bimodal)
    assert res.statistic == pytest.approx(ref.statistic) and res.pvalue == pytest.approx(ref.pvalue)
    assert res.statistic == pytest.approx(res.details["s"] ** 2 + res.details["k"] ** 2)
    assert res.reject
    assert not score_normality(rng.normal(size=1000), alpha=0.001).reject
    assert score_normality(np.arange(10.0)).skipped


def test_odds_ratio_test_size_and_power():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 100)
    pvals = [
        odds_ratio_test(rng.normal(size=200), y, n_train=(100, 100), n_permutations=99, seed=i).pvalue
        for i in range(200)
    ]
    rate = np.mean(np.array(pvals) <= 0.05)
    assert 0.01 <= rate <= 0.10
    shifted = rng.normal(size=200) + 0.8 * y
    res = odds_ratio_test(shifted, y, n_train=(90, 110), n_permutations=199, seed=0)
    assert res.pvalue == pytest.approx(1 / 200) and res.details["welch_pvalue"] < 1e-6
    # The statistic is the held-out mean log-likelihood-ratio contrast; the prior constant cancels.
    assert res.statistic == pytest.approx(shifted[y == 1].mean() - shifted[y == 0].mean())
    assert res.details["prior_log_odds"] == pytest.approx(np.log(110 / 90))


def test_mmd_unbiased_statistic_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4))
    y = np.repeat([0, 1], 30)
    res = mmd_test(X, y, n_permutations=0, standardize=False)
    sigma = res.details["bandwidth"]
    d = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    assert sigma == pytest.approx(np.median(d[np.triu_indices(60, 1)]))
    K = np.exp(-(d**2) / (2 * sigma**2))
    a, b, c = K[y == 1][:, y == 1], K[y == 0][:, y == 0], K[y == 1][:, y == 0]
    ref = (a.sum() - np.trace(a)) / (30 * 29) + (b.sum() - np.trace(b)) / (30 * 29) - 2 * c.mean()
    assert res.statistic == pytest.approx(ref, rel=1e-10)
    biased = mmd_test(X, y, n_permutations=0, standardize=False, unbiased=False).statistic
    assert biased == pytest.approx(a.mean() + b.mean() - 2 * c.mean(), rel=1e-10)
    Kt = gaussian_kernel(torch.as_tensor(X), sigma).numpy()
    np.testing.assert_allclose(Kt, K, atol=1e-12)
    assert median_bandwidth(torch.as_tensor(X)) == pytest.approx(sigma)


def test_mmd_size_and_power():
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 40)
    rej = [mmd_test(rng.gamma(2.0, 1.0, size=(80, 5)), y, n_permutations=99, seed=i).pvalue <= 0.05 for i in range(60)]
    assert np.mean(rej) <= 0.15
    X = rng.gamma(2.0, 1.0, size=(80, 5))
    X[y == 1, 0] += 1.5
    res = mmd_test(X, y, n_permutations=199, seed=0, alpha=0.05)
    assert res.reject and res.pvalue == pytest.approx(1 / 200)
    again = mmd_test(X, y, n_permutations=199, seed=0, alpha=0.05, batch_size=13)
    assert again.pvalue == res.pvalue and again.statistic == pytest.approx(res.statistic)


def test_benjamini_hochberg_matches_scipy():
    rng = np.random.default_rng(5)
    p = np.r_[rng.uniform(size=180), rng.uniform(0, 1e-3, size=20)]
    np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"), rtol=1e-12)
    P = rng.uniform(size=(50, 3)) ** 2
    np.testing.assert_allclose(
        benjamini_hochberg(P, axis=0), stats.false_discovery_control(P, axis=0, method="bh"), rtol=1e-12
    )
    withnan = p.copy()
    withnan[3] = np.nan
    q = benjamini_hochberg(withnan)
    assert np.isnan(q[3])
    np.testing.assert_allclose(np.delete(q, 3), stats.false_discovery_control(np.delete(p, 3), method="bh"))


def test_channel_selectivity_against_scipy_and_directions():
    rng = np.random.default_rng(6)
    N, C = 120, 30
    y = np.repeat([0, 1], N // 2)
    v = rng.gamma(2.0, 1.0, size=(N, C, 2))
    v[y == 1, :4, 1] += 2.0  # max of channels 0-3 prefer type 1 (sharp)
    v[y == 0, 4:6, 0] += 2.0  # mean of channels 4-5 prefer type 0 (blurred)
    sel = channel_selectivity(v, y, stat_names=["mean", "max"], fdr=0.05)
    for c in (0, 4, 17):
        for s in (0, 1):
            ref = stats.mannwhitneyu(v[y == 1, c, s], v[y == 0, c, s], alternative="two-sided")
            assert sel.u[c, s] == ref.statistic
            assert sel.p[c, s] == pytest.approx(ref.pvalue, rel=1e-10)
            assert sel.auc[c, s] == pytest.approx(ref.statistic / (60 * 60))
    np.testing.assert_allclose(sel.q[:, 0], stats.false_discovery_control(sel.p[:, 0], method="bh"))
    assert sel.counts["max"]["n_prefer_type1"] >= 4 and sel.counts["max"]["n_prefer_type0"] == 0
    assert sel.counts["mean"]["n_prefer_type0"] >= 2 and sel.counts["mean"]["n_prefer_type1"] <= 1
    assert (sel.auc[:4, 1] > 0.8).all() and (sel.auc[4:6, 0] < 0.2).all()
    with pytest.raises(ValueError, match="NaN"):
        channel_selectivity(np.full((4, 2, 1), np.nan), [0, 0, 1, 1])
