"""Input validation at the statistics' boundary, and the small-n rule of Kim's asymptotic test."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from scipy import stats as sps

import fovea_ray.stats as fs
from fovea_ray.stats import (
    benjamini_hochberg,
    channel_selectivity,
    kim_asymptotic_test,
    kim_min_test_per_class,
    mmd_test,
    permutation_pvalue,
    score_normality,
)


def test_no_statistics_signature_names_execution_plumbing():
    banned = {"use_ray", "address", "max_workers", "solver_dtype"}
    found = []
    for name in fs.__all__:
        obj = getattr(fs, name)
        if callable(obj):
            try:
                params = inspect.signature(obj).parameters
            except (TypeError, ValueError):
                continue
            found += [(name, p) for p in params if p in banned]
    assert found == []


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_mmd_refuses_non_finite_X(bad):
    X = np.random.default_rng(0).normal(size=(20, 3))
    X[4, 1] = bad  # before: every permutation tied, p = 1/(P+1), H0 rejected
    with pytest.raises(ValueError, match="X must be finite"):
        mmd_test(X, np.repeat([0, 1], 10), n_permutations=19)


def test_labels_other_than_0_1_are_errors():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 9 + [2, 2])
    with pytest.raises(ValueError, match=r"y must hold only the labels 0 and 1, got \[2\]"):
        mmd_test(rng.normal(size=(20, 3)), y, n_permutations=19)  # before: merged into type 0
    with pytest.raises(ValueError, match=r"y must hold only the labels 0 and 1, got \[2\]"):
        channel_selectivity(rng.normal(size=(20, 3, 2)), y)  # before: dropped


def test_permutation_pvalue_of_nan_is_nan():
    assert math.isnan(permutation_pvalue(float("nan"), np.linspace(0, 1, 99)))  # before: 1/(P+1)
    assert permutation_pvalue(0.5, [0.1, 0.6, 0.7]) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="null must hold no NaN"):
        permutation_pvalue(0.5, [0.1, np.nan])


def test_benjamini_hochberg_empty_like_scipy():
    out = benjamini_hochberg([])
    ref = sps.false_discovery_control(np.array([]))
    assert out.shape == ref.shape == (0,)
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.04, 0.03]), sps.false_discovery_control([0.01, 0.04, 0.03]))


def test_score_normality_on_constant_scores_is_skipped():
    out = score_normality(np.full(30, 2.5))
    assert out.skipped and "constant" in out.reason and out.reject is None


def _null_size(te: int, alpha: float, rng, reps: int = 200_000) -> float:
    """Size of Kim's asymptotic test on null confusions: predictions independent of the
    class, the classifier's bias q uniform in [0.3, 0.7] (as a C2ST under H0)."""
    q = rng.uniform(0.3, 0.7, reps)
    e0 = rng.binomial(te, q) / te  # type 0 predicted 1
    e1 = rng.binomial(te, 1 - q) / te  # type 1 predicted 0
    var = e0 * (1 - e0) / te + e1 * (1 - e1) / te
    num = e0 + e1 - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        T = np.where(var > 0, num / np.sqrt(var), np.where(num < 0, -np.inf, np.where(num > 0, np.inf, 0.0)))
    # The vectorised T is the library's, on a few confusions.
    for i in range(5):
        cm = [[te - round(e0[i] * te), round(e0[i] * te)], [round(e1[i] * te), te - round(e1[i] * te)]]
        assert kim_asymptotic_test(cm)[0] == pytest.approx(T[i])
    return float(np.mean(sps.norm.cdf(T) <= alpha))


@pytest.mark.parametrize("alpha", [0.01, 0.05])
def test_small_n_rule_matches_a_simulation(alpha):
    rng = np.random.default_rng(12)
    n_min = kim_min_test_per_class(alpha)
    assert (kim_min_test_per_class(0.01), kim_min_test_per_class(0.05)) == (45, 27)
    # At the rule's count and beyond, the size is at most 1.5 alpha (the rule's promise) ...
    for te in (n_min, 2 * n_min):
        assert _null_size(te, alpha, rng) <= 1.5 * alpha
    # ... and well below it the test is anti-conservative (the measured defect: 0.020 at 10 + 10).
    if alpha == 0.01:
        assert _null_size(10, alpha, rng) > 1.5 * alpha


def test_c2st_warns_and_defers_to_the_permutation_test_at_small_n():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 4))
    y = np.repeat([0, 1], 25)
    r = fs.classifier_two_sample_test(X, y, n_permutations=99, alpha=0.01)
    assert (r.te0, r.te1) == (12, 12) and not r.asymptotic_reliable
    assert any("needs >= 45 per class" in w for w in r.warnings)
    rec = r.to_record()
    assert rec["asymptotic_reliable"] is False and rec["deciding_test"] == "kim_half_permutation"
    big = fs.classifier_two_sample_test(rng.normal(size=(200, 4)), np.repeat([0, 1], 100), alpha=0.01)
    assert big.asymptotic_reliable and not any("needs >=" in w for w in big.warnings)
