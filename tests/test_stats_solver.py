"""The batched L2-logistic solver against scikit-learn's lbfgs on the same objective."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from fovea_ray.stats import _seeding
from fovea_ray.stats.solver import fit_logistic_batched, prepare_design


def activation_like(rng, n, channels):
    """Gamma 'mean' and 'max' statistics per channel, channel scales spread, a shared contrast factor."""
    scale = np.exp(rng.normal(0.0, 0.5, size=channels))
    contrast = rng.gamma(4.0, 0.25, size=(n, 1))
    mean = rng.gamma(2.0, scale, size=(n, channels)) * contrast
    mx = mean * (2.0 + rng.gamma(2.0, 0.5, size=(n, channels)))
    return np.concatenate([mean, mx], axis=1)


def sk_objective(X, y, coef, intercept, C=1.0):
    z = X @ coef + intercept
    return 0.5 * coef @ coef + C * np.sum(np.logaddexp(0.0, -(2 * y - 1) * z))


def sk_fit(X, y, C=1.0):
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("error", ConvergenceWarning)
        return LogisticRegression(C=C, solver="lbfgs", tol=1e-12, max_iter=20000).fit(X, y)


def permuted_split(y, test_size, seed, index):
    """A seeded permutation of the labels and a stratified train mask for it."""
    rng = _seeding.stream(seed, _seeding.FULL_PERMUTATION, index)
    yp = rng.permutation(np.asarray(y))
    train, _ = _seeding.stratified_split(yp, test_size, rng)
    mask = np.zeros(yp.shape[0], dtype=bool)
    mask[train] = True
    return yp, mask


def permuted_columns(y, B, seed=0):
    cols = [permuted_split(y, 0.5, seed, i) for i in range(B)]
    return np.stack([c[0] for c in cols], 1).astype(float), np.stack([c[1] for c in cols], 1)


@pytest.mark.parametrize("n,channels", [(300, 20), (160, 60)])  # d < n_train, and d > n_train (separable)
def test_matches_sklearn_optimum(n, channels):
    rng = np.random.default_rng(n)
    X = activation_like(rng, n, channels)
    y = np.repeat([0, 1], n // 2)
    Y, M = permuted_columns(y, 4, seed=n)
    fit = fit_logistic_batched(prepare_design(X, curvature_rows=n // 2), Y, M)
    assert fit.converged.all()
    for b in range(Y.shape[1]):
        tr = M[:, b]
        ref = sk_fit(X[tr], Y[tr, b])
        ref_obj = sk_objective(X[tr], Y[tr, b], ref.coef_[0], ref.intercept_[0])
        rel = abs(fit.objective[0, b] - ref_obj) / ref_obj
        assert rel < 1e-6, (b, rel)
        # Our own objective bookkeeping is the sklearn objective of our coefficients.
        assert fit.objective[0, b] == pytest.approx(
            sk_objective(X[tr], Y[tr, b], fit.coef[0, :, b], fit.intercept[0, b]), rel=1e-10
        )
        te = ~tr
        np.testing.assert_array_equal(fit.decision[0, te, b] > 0, ref.decision_function(X[te]) > 0)
        np.testing.assert_allclose(fit.decision[0, :, b], ref.decision_function(X), rtol=1e-3, atol=1e-3)


def test_default_precision_gives_identical_accuracies_on_100_permutations():
    rng = np.random.default_rng(3)
    n, channels = 400, 40
    X = activation_like(rng, n, channels)
    y = np.repeat([0, 1], n // 2)
    Y, M = permuted_columns(y, 100, seed=11)
    design = prepare_design(X, curvature_rows=n // 2)
    test = M == 0
    acc = lambda f: (((f.decision[0] > 0) == (Y > 0.5)) & test).sum(0) / test.sum(0)  # noqa: E731
    default = acc(fit_logistic_batched(design, Y, M))
    ref = acc(fit_logistic_batched(design, Y, M, precision="float64", tol=1e-11))
    same = np.mean(default == ref)
    fast = np.mean(acc(fit_logistic_batched(design, Y, M, precision="float32")) == ref)
    print(f"identical held-out accuracy: default (mixed) {same:.2f}, float32 only {fast:.2f}")
    assert same >= 0.99


def test_regularisation_strength_and_no_mask():
    rng = np.random.default_rng(5)
    X = activation_like(rng, 200, 10)
    y = rng.integers(0, 2, size=200)
    for C in (0.05, 20.0):
        fit = fit_logistic_batched(prepare_design(X, C=C), y)
        ref = sk_fit(X, y, C=C)
        assert fit.objective[0, 0] == pytest.approx(sk_objective(X, y, ref.coef_[0], ref.intercept_[0], C), rel=1e-8)
        assert fit.objective[0, 0] <= sk_objective(X, y, ref.coef_[0], ref.intercept_[0], C) * (1 + 1e-12)
        np.testing.assert_allclose(fit.coef[0, :, 0], ref.coef_[0], rtol=1e-4, atol=1e-4 * np.abs(ref.coef_).max())
        assert fit.intercept[0, 0] == pytest.approx(ref.intercept_[0], rel=1e-3, abs=1e-4)


def test_groups_are_independent_fits():
    rng = np.random.default_rng(9)
    Xs = np.stack([activation_like(rng, 120, 8) for _ in range(3)])
    ys = rng.integers(0, 2, size=(3, 120, 2)).astype(float)
    many = fit_logistic_batched(prepare_design(Xs), ys)
    for g in range(3):
        one = fit_logistic_batched(prepare_design(Xs[g]), ys[g])
        np.testing.assert_allclose(many.objective[g], one.objective[0], rtol=1e-10)
        np.testing.assert_allclose(many.coef[g], one.coef[0], rtol=1e-5, atol=1e-8)


def test_bad_input():
    X = np.random.default_rng(0).normal(size=(20, 3))
    d = prepare_design(X)
    with pytest.raises(ValueError, match="only 0 and 1"):
        fit_logistic_batched(d, np.full(20, 2.0))
    with pytest.raises(ValueError, match="shape"):
        fit_logistic_batched(d, np.zeros((19, 2)))
    with pytest.raises(ValueError, match="precision"):
        fit_logistic_batched(d, np.zeros(20), precision="half")
    with pytest.raises(ValueError, match="training row"):
        fit_logistic_batched(d, np.zeros((20, 1)), np.zeros((20, 1)))
    with pytest.raises(ValueError, match="NaN"):
        prepare_design(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="C must be positive"):
        prepare_design(X, C=0)


@pytest.mark.parametrize("basis", ["all rows", "training rows"])
def test_wide_designs_use_a_thin_basis_and_keep_the_optimum(basis):
    """d >> n (a wide layer, few samples): the fits run in the span of the rows (r < n
    coordinates), and the optimum, its objective and every row's decision value (held-out
    rows too) are scikit-learn's. With the training rows as the basis, held-out rows are
    only projected."""
    rng = np.random.default_rng(11)
    n, channels = 60, 400  # d = 800 >> n
    scales = np.tile(10.0 ** rng.uniform(0, 4, size=channels), 2)  # four decades of channel scale
    X = activation_like(rng, n, channels) * scales
    y = np.repeat([0, 1], n // 2)
    X[y == 1, :5] *= 1.3
    train = np.sort(rng.choice(n, size=n // 2, replace=False))
    Xs = (X - X[train].mean(0)) / X[train].std(0)
    design = prepare_design(Xs, curvature_rows=train.size, basis_rows=train if basis == "training rows" else None)
    assert design.n_features == 2 * channels and design.rank < (train.size if basis == "training rows" else n)
    fit = fit_logistic_batched(design, y, train_rows=train, precision="float64")
    ref = sk_fit(Xs[train], y[train])
    assert bool(fit.converged.all())
    assert sk_objective(Xs[train], y[train], fit.coef[0, :, 0], fit.intercept[0, 0]) <= sk_objective(
        Xs[train], y[train], ref.coef_[0], ref.intercept_[0]
    ) * (1 + 1e-9)
    np.testing.assert_allclose(fit.decision[0, :, 0], ref.decision_function(Xs), rtol=1e-5, atol=1e-5)
