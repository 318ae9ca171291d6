"""Size and power of the classifier two-sample tests on simulated data.

Both groups come from one skewed, correlated distribution (a gamma "contrast" factor
shared by all features times gamma noise, like activation statistics); the rejection
rate at alpha = 0.05 over 300 data sets must lie in the 99% binomial interval around 0.05.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from threadpoolctl import threadpool_limits

from fovea_ray.stats import classifier_two_sample_test
from fovea_ray.stats.permutation import GROUP_SIZE, full_permutation_many, full_permutation_null

N_DATASETS = 300
ALPHA = 0.05


def skewed_correlated(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples (half per type) of ``d`` skewed, correlated features; type 1 shifted by ``shift``
    in its first 5 features."""
    y = np.repeat([0, 1], n // 2).astype(np.int8)
    contrast = rng.gamma(2.0, 0.5, size=(n, 1))
    X = rng.gamma(2.0, 1.0, size=(n, d)) * (0.5 + contrast) + contrast
    X[y == 1, :5] += shift
    return X, y


def binomial_interval(n: int, p: float = ALPHA, level: float = 0.99) -> tuple[float, float]:
    lo, hi = stats.binom.interval(level, n, p)
    return lo / n, hi / n


@pytest.fixture(scope="module")
def null_runs():
    """300 null data sets (n = 400, d = 50): the study's test with the half permutation."""
    rng = np.random.default_rng(12345)
    data, results = [], []
    with threadpool_limits(1):
        for g in range(N_DATASETS):
            X, y = skewed_correlated(rng, 400, 50)
            res = classifier_two_sample_test(X, y, alpha=ALPHA, n_permutations=99, permutation="half", seed=g)
            data.append((X, y))
            results.append(res)
    return data, results


def test_asymptotic_and_half_permutation_sizes(null_runs):
    _, results = null_runs
    lo, hi = binomial_interval(N_DATASETS)
    rate_asym = np.mean([r.reject_asymptotic for r in results])
    rate_half = np.mean([r.reject_permutation for r in results])
    rate_half_p = np.mean([r.p_permutation <= ALPHA for r in results])
    print(
        f"null rejection rates over {N_DATASETS} data sets at alpha={ALPHA}: asymptotic {rate_asym:.3f}, "
        f"half permutation (order-statistic rule) {rate_half:.3f}, half permutation p<=alpha {rate_half_p:.3f}; "
        f"99% binomial interval [{lo:.3f}, {hi:.3f}]"
    )
    assert lo <= rate_asym <= hi
    assert lo <= rate_half <= hi
    assert lo <= rate_half_p <= hi
    # Under H0 the asymptotic p-values are roughly uniform, not piled up anywhere.
    p = np.array([r.p_asymptotic for r in results])
    assert 0.35 < np.mean(p <= 0.5) < 0.65


@pytest.mark.parametrize(
    "group_size", [GROUP_SIZE, 5]
)  # the default (one group: the observed split), or 4 re-splits of 5
def test_full_permutation_size(null_runs, group_size):
    data, results = null_runs
    Xs = np.stack([X for X, _ in data])
    ys = np.stack([y for _, y in data])
    masks = np.zeros(ys.shape, dtype=bool)
    for g, r in enumerate(results):
        masks[g, r.fit.train_index] = True
    P = 19
    with threadpool_limits(1):
        obs, null = full_permutation_many(
            Xs, ys, masks, n_permutations=P, seeds=list(range(N_DATASETS)), test_size=0.5, group_size=group_size
        )
    assert null.shape == (N_DATASETS, P)
    p = (1 + (null >= obs[:, None]).sum(1)) / (P + 1)
    rate = np.mean(p <= ALPHA)
    lo, hi = binomial_interval(N_DATASETS)
    print(
        f"full permutation (P={P}, groups of {min(group_size, P + 1)}) null rejection rate {rate:.3f}; "
        f"99% interval [{lo:.3f}, {hi:.3f}]"
    )
    assert lo <= rate <= hi
    # The observed fit is the same procedure as the null fits: its accuracy is null-like.
    assert abs(np.mean(obs) - np.mean(null)) < 0.01


def test_full_permutation_many_matches_single_data_set(null_runs):
    data, results = null_runs
    X, y = data[7]
    res = results[7]
    mask = np.zeros(y.size, dtype=bool)
    mask[res.fit.train_index] = True
    obs, null = full_permutation_many(
        X[None], y[None], mask[None], n_permutations=9, seeds=[7], test_size=0.5, group_size=4
    )
    single = full_permutation_null(
        X, y, res.fit.train_index, n_permutations=9, seed=7, test_size=0.5, group_size=4
    )
    assert single.n_permutations == 11 and null.shape == (1, 11)  # 3 groups of 4
    assert single.observed_accuracy == pytest.approx(obs[0])
    np.testing.assert_allclose(single.null_accuracies, null[0])


def test_power_rises_with_n():
    rng = np.random.default_rng(7)
    rates = {}
    with threadpool_limits(1):
        for n in (100, 200, 400):
            rej = []
            for g in range(40):
                X, y = skewed_correlated(rng, n, 20, shift=0.8)
                rej.append(classifier_two_sample_test(X, y, alpha=ALPHA, permutation="none", seed=g).reject_asymptotic)
            rates[n] = float(np.mean(rej))
    print(f"power under a mean shift of 0.8 in 5 of 20 features: {rates}")
    assert rates[100] < rates[200] < rates[400]
    assert rates[400] >= 0.8
