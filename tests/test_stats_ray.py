"""The Ray fan-out (fovea_ray.cluster): same seed, same p-value, whatever the number of workers."""

from __future__ import annotations

import numpy as np
import pytest

from fovea_ray.cluster import Execution, RayExecutor, fan_out
from fovea_ray.stats import classifier_two_sample_test
from fovea_ray.stats.permutation import full_permutation_null


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    X = rng.gamma(2.0, 1.0, size=(240, 16)) * rng.gamma(4.0, 0.25, size=(240, 1))
    y = np.repeat([0, 1], 120)
    X[y == 1, :2] += 0.7
    return X, y


def test_fan_out_keeps_the_order_of_items(ray_session):
    # a library function (workers import it; this test module is not on their path)
    assert list(fan_out(str, range(7), max_in_flight=2)) == [str(x) for x in range(7)]
    assert list(fan_out(str, [])) == []


def test_bit_identical_with_one_or_two_workers(ray_session, data, capsys):
    X, y = data
    runs = [
        classifier_two_sample_test(
            X,
            y,
            permutation="full",
            n_permutations=30,
            seed=4,
            alpha=0.05,
            executor=RayExecutor(max_in_flight=w, progress=True),
        )
        for w in (1, 2)
    ]
    a, b = runs
    assert a.full_permutation_info["backend"] == "ray" and a.full_permutation_info["n_groups"] == 1
    np.testing.assert_array_equal(a.null_accuracies, b.null_accuracies)
    assert a.p_permutation == b.p_permutation
    assert "batched group" in capsys.readouterr().err  # progress was shown
    # Several groups (tasks, each a re-split): identical with 1 or 2 in flight, and in-process.
    kw = dict(n_permutations=27, seed=4, test_size=0.5, group_size=7)
    train = a.fit.train_index
    one = full_permutation_null(X, y, train, executor=RayExecutor(max_in_flight=1), **kw)
    two = full_permutation_null(X, y, train, executor=Execution(max_in_flight=2).executor(), **kw)
    local = full_permutation_null(X, y, train, **kw)
    assert (one.n_groups, one.group_size, one.n_permutations) == (4, 7, 27)
    assert (one.backend, local.backend) == ("ray", "local")
    np.testing.assert_array_equal(one.null_accuracies, two.null_accuracies)
    np.testing.assert_array_equal(one.null_accuracies, local.null_accuracies)
    assert one.observed_accuracy == two.observed_accuracy == local.observed_accuracy
