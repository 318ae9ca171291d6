"""The full permutation test on Ray: same seed, same p-value, whatever the number of workers."""

from __future__ import annotations

import numpy as np
import pytest

from fovea_ray.stats import classifier_two_sample_test
from fovea_ray.stats.permutation import full_permutation_null


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    X = rng.gamma(2.0, 1.0, size=(240, 16)) * rng.gamma(4.0, 0.25, size=(240, 1))
    y = np.repeat([0, 1], 120)
    X[y == 1, :2] += 0.7
    return X, y


def test_bit_identical_with_one_or_two_workers(ray_session, data, capsys):
    X, y = data
    runs = [
        classifier_two_sample_test(
            X, y, permutation="full", n_permutations=30, seed=4, alpha=0.05, max_workers=w, progress=True
        )
        for w in (1, 2)
    ]
    a, b = runs
    assert a.full_permutation_info["backend"] == "ray" and a.full_permutation_info["n_groups"] == 1
    np.testing.assert_array_equal(a.null_accuracies, b.null_accuracies)
    assert a.p_permutation == b.p_permutation
    assert "full permutation" in capsys.readouterr().err  # progress was shown
    # Several groups (tasks, each a re-split): identical with 1 or 2 in flight, and in-process.
    kw = dict(n_permutations=27, seed=4, test_size=0.5, group_size=7)
    one = full_permutation_null(X, y, a.train_index, max_workers=1, **kw)
    two = full_permutation_null(X, y, a.train_index, max_workers=2, **kw)
    local = full_permutation_null(X, y, a.train_index, use_ray=False, **kw)
    assert (one.n_groups, one.group_size, one.n_permutations) == (4, 7, 27)
    np.testing.assert_array_equal(one.null_accuracies, two.null_accuracies)
    np.testing.assert_array_equal(one.null_accuracies, local.null_accuracies)
    assert one.observed_accuracy == two.observed_accuracy == local.observed_accuracy


def test_full_permutation_detects_a_shift_and_uses_the_exact_optimum(ray_session, data):
    X, y = data
    r = classifier_two_sample_test(X, y, permutation="full", n_permutations=19, seed=1, alpha=0.05)
    assert r.reject_permutation and r.p_permutation == pytest.approx(1 / 20)
    # The default classifier converged here, so the batched optimum agrees with it.
    assert r.converged and r.permutation_observed_accuracy == pytest.approx(r.accuracy)
    assert r.full_permutation_info["converged_fraction"] == 1.0


def test_full_permutation_with_a_custom_classifier(ray_session, data):
    from sklearn.neighbors import KNeighborsClassifier

    X, y = data
    r = classifier_two_sample_test(
        X, y, classifier=KNeighborsClassifier(5), permutation="full", n_permutations=9, seed=2, alpha=0.1
    )
    assert r.full_permutation_info["solver"] == "KNeighborsClassifier"
    assert r.null_accuracies.shape == (9,) and r.permutation_observed_accuracy == r.accuracy
