"""Kim et al.'s tests and the C2ST result: the paper's figure, orientations, rules, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import confusion_matrix

from fovea_ray.stats import classifier_two_sample_test, kim_asymptotic_test
from fovea_ray.stats.kim import (
    class_errors,
    confusion_from_paper,
    kim_order_statistic_rule,
    permutation_pvalue,
)

PAPER_CNF = [[1213, 51], [66, 1170]]  # the report's CNF = [[TP, FP], [FN, TN]]


def test_paper_counts_give_T_of_minus_107_5():
    cm = confusion_from_paper(PAPER_CNF)
    assert cm.tolist() == [[1170, 51], [66, 1213]]  # rows = true (0, 1), cols = predicted
    assert cm.sum() == 2500 and (cm[0, 0] + cm[1, 1]) / 2500 == pytest.approx(0.9532)
    T, p = kim_asymptotic_test(cm)
    print(f"Kim T on the study's counts: {T:.4f}, p = {p:.3g}")
    assert T == pytest.approx(-107.56, abs=0.01)
    assert p == 0.0 or p < 1e-300
    # Independent recomputation from the definition, with the TRUE class counts.
    e0, e1 = 51 / 1221, 66 / 1279
    T_ref = (e0 + e1 - 1) / math.sqrt(e0 * (1 - e0) / 1221 + e1 * (1 - e1) / 1279)
    assert T == pytest.approx(T_ref, rel=1e-12)
    # The notebook's bug (predicted counts as denominators) gives a different value.
    T_bug = (51 / 1264 + 66 / 1236 - 1) / math.sqrt(
        (51 / 1264) * (1 - 51 / 1264) / 1264 + (66 / 1236) * (1 - 66 / 1236) / 1236
    )
    assert abs(T_bug - T) > 0.1


def test_class_errors_use_true_class_counts():
    e0, e1, te0, te1 = class_errors([[8, 2], [30, 60]])
    assert (te0, te1) == (10, 90)
    assert e0 == pytest.approx(0.2) and e1 == pytest.approx(30 / 90)


def test_kim_statistic_degenerate_cases():
    assert kim_asymptotic_test([[10, 0], [0, 10]]) == (-math.inf, 0.0)  # perfect
    assert kim_asymptotic_test([[0, 10], [10, 0]]) == (math.inf, 1.0)  # perfectly wrong
    assert kim_asymptotic_test([[10, 0], [10, 0]]) == (0.0, 0.5)  # one class predicted
    T, p = kim_asymptotic_test([[40, 10], [15, 35]])
    assert p == pytest.approx(stats.norm.cdf(T))
    with pytest.raises(ValueError, match="2 x 2"):
        kim_asymptotic_test([[1, 2, 3]])
    with pytest.raises(ValueError, match="both true classes"):
        kim_asymptotic_test([[0, 0], [3, 4]])
    with pytest.raises(ValueError, match="non-negative"):
        kim_asymptotic_test([[-1, 2], [3, 4]])


def test_order_statistic_rule():
    # alpha = 0.01, P = 100 (the study): k = ceil(0.99 * 101) = 100, the second largest of 101.
    null = np.linspace(0.45, 0.55, 100)
    reject, k, thr = kim_order_statistic_rule(0.9532, null, 0.01)
    assert (reject, k, thr) == (True, 100, pytest.approx(0.55))
    # alpha = 0.05, P = 19: k = 19 (not 20 from 19.000000000000004).
    reject, k, thr = kim_order_statistic_rule(0.6, np.full(19, 0.5), 0.05)
    assert k == 19 and reject
    # A tie with the threshold does not reject.
    assert not kim_order_statistic_rule(0.5, np.full(19, 0.5), 0.05)[0]
    # Too few permutations can never reject.
    assert not kim_order_statistic_rule(1.0, np.full(5, 0.5), 0.05)[0]


def test_permutation_pvalue_plus_one_rule():
    assert permutation_pvalue(0.9, [0.5] * 99) == pytest.approx(0.01)
    assert permutation_pvalue(0.5, [0.5] * 99) == pytest.approx(1.0)
    assert permutation_pvalue(0.6, [0.7, 0.5, 0.6, 0.4]) == pytest.approx(3 / 5)


@pytest.fixture(scope="module")
def shifted():
    rng = np.random.default_rng(0)
    X = rng.gamma(2.0, 1.0, size=(400, 30))
    y = np.repeat([0, 1], 200)
    X[y == 1, :4] += 1.2
    return X, y


def test_result_fields_are_consistent(shifted):
    X, y = shifted
    r = classifier_two_sample_test(X, y, n_permutations=100, alpha=0.01, seed=3)
    assert r.confusion.tolist() == confusion_matrix(r.fit.y_test, r.y_pred, labels=[0, 1]).tolist()
    assert r.accuracy == pytest.approx(np.mean(r.y_pred == r.fit.y_test))
    assert r.te0 == 100 and r.te1 == 100 and r.fit.train_index.size == 200
    assert not set(r.fit.train_index) & set(r.fit.test_index)
    assert r.e0 == pytest.approx(np.mean(r.y_pred[r.fit.y_test == 0] == 1))
    assert r.e1 == pytest.approx(np.mean(r.y_pred[r.fit.y_test == 1] == 0))
    assert (r.statistic, r.p_asymptotic) == kim_asymptotic_test(r.confusion)
    assert r.null_accuracies.shape == (100,)
    assert r.p_permutation == pytest.approx((1 + np.sum(r.null_accuracies >= r.accuracy)) / 101)
    assert r.reject_asymptotic and r.reject_permutation and r.accuracy > 0.75
    assert r.order_statistic_k == 100
    assert r.pvalue == r.p_permutation
    assert r.fit.coef.shape == (30,) and r.classifier_name == "standardized"
    assert r.converged and r.optimality <= 1e-6 and r.classifier["C"] == 1.0
    # The one fit is scikit-learn's optimum of the same objective on the same standardised features.
    from sklearn.linear_model import LogisticRegression

    from fovea_ray.stats.classifier import standardize_with

    Xs = standardize_with(X, r.fit.train_index)
    sk = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(Xs[r.fit.train_index], y[r.fit.train_index])
    np.testing.assert_array_equal(r.y_pred, sk.predict(Xs[r.fit.test_index]))
    np.testing.assert_allclose(r.fit.coef, sk.coef_[0], rtol=1e-4, atol=1e-6)


def test_study_classifier_is_the_papers_fit(shifted):
    """classifier="study" is scikit-learn's LogisticRegression(C=1, lbfgs, 500) on raw features: the
    accuracy, Kim's T and the half-permutation null are those of that fit, as before this classifier
    became optional; its convergence is judged by the optimality condition."""
    from sklearn.linear_model import LogisticRegression

    X, y = shifted
    r = classifier_two_sample_test(X, y, n_permutations=100, alpha=0.01, seed=3, classifier="study")
    sk = LogisticRegression(C=1.0, solver="lbfgs", max_iter=500).fit(X[r.fit.train_index], y[r.fit.train_index])
    pred = sk.predict(X[r.fit.test_index])
    np.testing.assert_array_equal(r.y_pred, pred)
    assert r.accuracy == np.mean(pred == y[r.fit.test_index])
    assert (r.statistic, r.p_asymptotic) == kim_asymptotic_test(confusion_matrix(y[r.fit.test_index], pred))
    np.testing.assert_array_equal(r.y_pred, r.fit.estimator.predict(X[r.fit.test_index]))
    assert r.classifier_name == "study" and r.classifier["solver"].startswith("scikit-learn lbfgs")
    assert r.objective_gap is not None and r.converged == (r.objective_gap <= 1e-6)


def test_seeding_reproduces_and_varies(shifted):
    X, y = shifted
    a = classifier_two_sample_test(X, y, n_permutations=30, seed=5)
    b = classifier_two_sample_test(X, y, n_permutations=30, seed=5)
    c = classifier_two_sample_test(X, y, n_permutations=30, seed=6)
    np.testing.assert_array_equal(a.fit.test_index, b.fit.test_index)
    np.testing.assert_array_equal(a.null_accuracies, b.null_accuracies)
    assert a.p_permutation == b.p_permutation
    assert not np.array_equal(a.fit.test_index, c.fit.test_index)


def test_pluggable_classifier_and_named_ones(shifted):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.svm import LinearSVC

    X, y = shifted
    r = classifier_two_sample_test(X, y, classifier=LinearSVC(C=0.1), permutation="none")
    assert r.classifier_name == "LinearSVC" and np.isnan(r.p_permutation) and r.reject_permutation is None
    rf = classifier_two_sample_test(
        X, y, classifier=RandomForestClassifier(n_estimators=20, random_state=0), n_permutations=20
    )
    assert rf.fit.coef is None and rf.fit.scores_test.shape == (200,)  # log-odds of predict_proba
    s = classifier_two_sample_test(X, y, classifier="unscaled", permutation="none")
    assert s.classifier_name == "unscaled" and s.converged and s.accuracy > 0.75
    with pytest.raises(ValueError, match="classifier must be one of"):
        classifier_two_sample_test(X, y, classifier="ridge")


def test_input_validation_messages():
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.repeat([0, 1], 10)
    with pytest.raises(ValueError, match="NaN"):
        Xn = X.copy()
        Xn[3, 1] = np.nan
        classifier_two_sample_test(Xn, y)
    with pytest.raises(ValueError, match="only the labels 0 and 1"):
        classifier_two_sample_test(X, np.r_[y[:-1], 2])
    with pytest.raises(ValueError, match="at least 2 samples of each class, got 20 of 0 and 0 of 1"):
        classifier_two_sample_test(X, np.zeros(20))
    with pytest.raises(ValueError, match=r"one label per sample \(20\), got 19"):
        classifier_two_sample_test(X, y[:-1])
    with pytest.raises(ValueError, match="at least 2 samples of each class"):
        classifier_two_sample_test(X, np.r_[1, np.zeros(19)])
    with pytest.raises(ValueError, match="2-D"):
        classifier_two_sample_test(X[:, 0], y)
    with pytest.raises(ValueError, match="permutation must be one of"):
        classifier_two_sample_test(X, y, permutation="partial")
    with pytest.raises(ValueError, match="test_size"):
        classifier_two_sample_test(X, y, test_size=1.0)
    with pytest.raises(ValueError, match="seed"):
        classifier_two_sample_test(X, y, seed=-1)


def test_small_samples_warn_instead_of_failing():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 4))
    y = np.repeat([0, 1], 6)
    r = classifier_two_sample_test(X, y, n_permutations=10, alpha=0.05)
    assert any("needs >= 27 per class" in w and "rests on the permutation test" in w for w in r.warnings)
    assert not r.asymptotic_reliable and r.deciding_test == "kim_half_permutation"
    assert not any("low power" in w for w in r.warnings)  # the battery's one low-power note, not the test's
    assert any("cannot reject" in w for w in r.warnings)


@pytest.fixture(scope="module")
def gamma_shift():
    rng = np.random.default_rng(21)
    X = rng.gamma(2.0, 1.0, size=(240, 16)) * rng.gamma(4.0, 0.25, size=(240, 1))
    y = np.repeat([0, 1], 120)
    X[y == 1, :2] += 0.7
    return X, y


def test_full_permutation_in_process_detects_a_shift_and_uses_the_exact_optimum(gamma_shift):
    X, y = gamma_shift
    r = classifier_two_sample_test(X, y, permutation="full", n_permutations=19, seed=1, alpha=0.05)
    assert r.reject_permutation and r.p_permutation == pytest.approx(1 / 20) and r.pvalue == r.p_permutation
    # One fit: the full test's observed statistic is the layer's accuracy, and the null's refit of
    # the true labels (the same procedure) agrees with it.
    assert r.converged and r.permutation_observed_accuracy == r.accuracy
    assert r.full_permutation_info["observed_refit_accuracy"] == r.accuracy
    assert r.full_permutation_info["converged_fraction"] == 1.0 and r.full_permutation_info["backend"] == "local"
    rec = r.to_record()
    assert rec["full_permutation"]["p"] == r.p_permutation and rec["deciding_test"] == "full_permutation"


def test_full_permutation_with_a_custom_classifier(gamma_shift):
    from sklearn.neighbors import KNeighborsClassifier

    X, y = gamma_shift
    r = classifier_two_sample_test(
        X, y, classifier=KNeighborsClassifier(5), permutation="full", n_permutations=9, seed=2, alpha=0.1
    )
    assert r.full_permutation_info["solver"] == "KNeighborsClassifier"
    assert r.null_accuracies.shape == (9,) and r.permutation_observed_accuracy == r.accuracy
