"""The classifier two-sample test (C2ST) of the study, with its bugs fixed.

Two groups of samples (``y = 0``: type 0, peripheral/blurred; ``y = 1``: type 1,
foveal/sharp) are compared by how well a classifier tells them apart on held-out data.
Under H0: P0 = P1 no classifier beats chance, so the balanced error ``E = (e0 + e1) / 2``
is 1/2; a significantly lower error rejects H0.

References:
    Kim, I., Ramdas, A., Singh, A. & Wasserman, L. (2021). Classification accuracy as a
    proxy for two-sample testing. Annals of Statistics 49(1), 411-434 (arXiv:1602.02210).
    Lopez-Paz, D. & Oquab, M. (2017). Revisiting classifier two-sample tests. ICLR.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fovea_ray.stats import _seeding
from fovea_ray.stats._validate import check_fraction, check_xy, standardize_columns
from fovea_ray.stats.kim import (
    class_errors,
    kim_asymptotic_test,
    kim_order_statistic_rule,
    permutation_pvalue,
)
from fovea_ray.stats.permutation import full_permutation_null, half_permutation_null

__all__ = ["C2STResult", "classifier_two_sample_test", "default_classifier", "MIN_TEST_PER_CLASS"]

PERMUTATIONS = ("none", "half", "full")
#: Below this many held-out samples of a class the asymptotic normal approximation is poor.
MIN_TEST_PER_CLASS = 10


def default_classifier():
    """The study's classifier: ``LogisticRegression`` (L2, C=1, lbfgs, max_iter=500)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, solver="lbfgs", max_iter=500)


@dataclass(frozen=True, eq=False)
class C2STResult:
    """Result of :func:`classifier_two_sample_test` (scipy.stats style: ``statistic``, ``pvalue``).

    Attributes:
        accuracy: held-out accuracy ``alpha_*`` of the classifier.
        confusion: ``(2, 2)`` int counts, ``confusion[true, predicted]``, class order (0, 1):
            ``[[TN, FP], [FN, TP]]``. (The study's ``CNF`` is ``[[TP, FP], [FN, TN]]``; see
            :func:`fovea_ray.stats.kim.confusion_from_paper`.)
        e0: error rate on true class 0 (fraction of held-out type-0 samples predicted 1).
        e1: error rate on true class 1 (fraction of held-out type-1 samples predicted 0).
        te0, te1: held-out counts of true class 0 and 1 (the denominators of e0, e1).
        statistic: Kim's ``T = (2E - 1) / sqrt(e0(1-e0)/te0 + e1(1-e1)/te1)``, ``E = (e0+e1)/2``.
        p_asymptotic: ``Phi(T)``.
        p_permutation: ``(1 + #{null >= observed}) / (P + 1)``; NaN when ``permutation="none"``.
        null_accuracies: ``(P,)`` permutation accuracies (empty for "none").
        reject_asymptotic: ``p_asymptotic <= alpha`` (equivalently ``T <= -z_alpha``).
        n_permutations: P as used ("full" rounds P up to fill equal groups; see
            :mod:`fovea_ray.stats.permutation`).
        reject_permutation: "half": Kim's order-statistic rule ``alpha_* > alpha^(k)``,
            ``k = ceil((1 - alpha)(1 + P))``; "full": ``p_permutation <= alpha``; None for "none".
        alpha, permutation, seed, test_size: the settings used.
        permutation_observed_accuracy: the observed statistic the permutation p-value
            compares with: ``accuracy`` for "half"; for "full" with the default classifier,
            the accuracy of the batched solver's exact optimum on the same split (the
            same procedure as the null fits).
        order_statistic_k, order_statistic_threshold: ``k`` and ``alpha^(k)`` ("half").
        train_index, test_index: the stratified split (row indices into ``X``).
        y_test, scores_test: held-out labels and out-of-sample classifier scores
            (``decision_function``; else the log-odds of ``predict_proba``).
        coef, intercept: the fitted linear model (None for non-linear classifiers).
        classifier_name, converged, n_iter: what was fitted and whether it converged
            (``converged`` is None when the estimator does not say).
        warnings: small-sample and convergence notes (never fatal).
        estimator: the fitted classifier (not shown in the repr).
    """

    accuracy: float
    confusion: np.ndarray
    e0: float
    e1: float
    te0: int
    te1: int
    statistic: float
    p_asymptotic: float
    p_permutation: float
    null_accuracies: np.ndarray = field(repr=False)
    reject_asymptotic: bool
    reject_permutation: bool | None
    alpha: float
    permutation: str
    n_permutations: int
    seed: int
    test_size: float
    permutation_observed_accuracy: float | None
    order_statistic_k: int | None
    order_statistic_threshold: float | None
    train_index: np.ndarray = field(repr=False)
    test_index: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    scores_test: np.ndarray = field(repr=False)
    coef: np.ndarray | None = field(repr=False)
    intercept: float | None
    classifier_name: str
    converged: bool | None
    n_iter: int | None
    standardize: bool
    warnings: tuple[str, ...] = ()
    full_permutation_info: dict = field(default_factory=dict, repr=False)
    estimator: Any = field(default=None, repr=False)

    @property
    def pvalue(self) -> float:
        """The permutation p-value when permutations ran, else the asymptotic one."""
        return self.p_asymptotic if self.permutation == "none" else self.p_permutation

    @property
    def y_pred(self) -> np.ndarray:
        """Held-out predictions (the sign of ``scores_test``)."""
        return (self.scores_test > 0).astype(np.int8)


def _scores(est, X) -> np.ndarray:
    if hasattr(est, "decision_function"):
        s = np.asarray(est.decision_function(X), dtype=np.float64)
        return s.reshape(-1) if s.ndim == 1 else s[:, -1]
    p = np.asarray(est.predict_proba(X), dtype=np.float64)[:, 1]
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


def _is_default_logistic(clf) -> bool:
    return clf is None


def classifier_two_sample_test(
    X,
    y,
    *,
    test_size: float = 0.5,
    alpha: float = 0.01,
    n_permutations: int = 100,
    permutation: str = "half",
    classifier=None,
    seed: int = 0,
    standardize: bool = False,
    use_ray: bool = True,
    address: str | None = None,
    max_workers: int | None = None,
    device: str = "cpu",
    solver_dtype: str = "mixed",
    progress: bool = False,
) -> C2STResult:
    """Classifier two-sample test of H0: P0 = P1 (Kim et al.; the study's test, fixed).

    1. Stratified split: ``round(test_size * n_c)`` samples of each class ``c`` held out
       (seeded by ``seed``).
    2. Fit ``classifier`` on the training part (default: the study's
       ``LogisticRegression(C=1, lbfgs, max_iter=500)``, L2), predict the held-out part.
    3. Kim's asymptotic test from the held-out confusion (:func:`kim_asymptotic_test`),
       with ``e0``/``e1`` over the TRUE class counts.
    4. Optional permutation test:
       ``"half"`` permutes the held-out labels ``P`` times with the fitted model fixed and
       decides by Kim's order-statistic rule; ``"full"`` permutes the labels of the whole
       sample, re-splits and refits ``P`` times (Ray tasks; the batched L2-logistic solver
       for the default classifier) and decides by ``p <= alpha``. Both report the
       ``(1 + #{null >= observed}) / (P + 1)`` p-value.

    Args:
        X: ``(n, d)`` features; y: ``(n,)`` labels in {0, 1} (1 = type 1).
        test_size: held-out fraction (the study's kappa = 1/2).
        alpha: level of the decisions.
        n_permutations: P (>= (1 - alpha) / alpha for the permutation test to be able to reject).
        permutation: "none", "half" or "full".
        classifier: any sklearn-style estimator with fit/predict and decision_function
            (or predict_proba); cloned before fitting.
        seed: master seed of the split and the permutations.
        standardize: z-score every column with the whole sample's mean and sd first
            (label-free, so permutation validity is kept); off by default, as in the study.
        use_ray, address, max_workers, device, solver_dtype, progress: how "full" runs
            (see :func:`fovea_ray.stats.permutation.full_permutation_null`).

    Returns:
        :class:`C2STResult`.

    Raises:
        ValueError: bad shapes, NaN, labels other than 0/1, a missing class, fewer than 2
            samples of a class, or bad options.
    """
    from sklearn.base import clone

    Xa, ya = check_xy(X, y)
    test_size = check_fraction("test_size", test_size)
    alpha = check_fraction("alpha", alpha)
    seed = _seeding.check_seed(seed)
    if permutation not in PERMUTATIONS:
        raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {permutation!r}")
    P = int(n_permutations)
    if P < 0 or P != n_permutations:
        raise ValueError(f"n_permutations must be a non-negative integer, got {n_permutations!r}")
    if permutation != "none" and P < 1:
        raise ValueError(f"permutation={permutation!r} needs n_permutations >= 1")
    notes: list[str] = []
    if standardize:
        Xa = standardize_columns(Xa)

    train, test = _seeding.stratified_split(ya, test_size, _seeding.stream(seed, _seeding.SPLIT))
    est = clone(classifier) if classifier is not None else default_classifier()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(Xa[train], ya[train])
    converged = None
    n_iter = None
    if hasattr(est, "n_iter_"):
        n_iter = int(np.max(est.n_iter_))
        max_iter = getattr(est, "max_iter", None)
        converged = bool(max_iter is None or n_iter < max_iter)
    for w in caught:
        if "converge" in str(w.message).lower() or type(w.message).__name__ == "ConvergenceWarning":
            converged = False
    if converged is False:
        notes.append(
            f"{type(est).__name__} stopped before converging ({n_iter} iterations, as the study's "
            "max_iter=500 allows); the full permutation test fits every model to its optimum"
        )

    scores = _scores(est, Xa[test])
    y_test = ya[test]
    pred = np.asarray(est.predict(Xa[test])).astype(np.int8)
    cm = np.zeros((2, 2), dtype=np.int64)
    np.add.at(cm, (y_test, pred), 1)
    accuracy = float(np.mean(pred == y_test))
    e0, e1, te0, te1 = class_errors(cm)
    T, p_asym = kim_asymptotic_test(cm)
    if min(te0, te1) < MIN_TEST_PER_CLASS:
        notes.append(f"only {te0} and {te1} held-out samples of class 0 and 1: the asymptotic test is unreliable")
    n0, n1 = int(np.sum(ya == 0)), int(np.sum(ya == 1))
    if min(n0, n1) < 100:
        notes.append(f"n = {n1} type 1 and {n0} type 0: low power")
    if permutation != "none" and P < (1 - alpha) / alpha:
        notes.append(
            f"P = {P} permutations cannot reject at alpha = {alpha} (smallest p is 1/(P+1) = {1 / (P + 1):.3g})"
        )

    null = np.zeros(0)
    p_perm = math.nan
    reject_perm = None
    k = thr = None
    perm_obs = None
    full_info: dict = {}
    if permutation == "half":
        null = half_permutation_null(y_test, pred, P, seed)
        perm_obs = accuracy
        p_perm = permutation_pvalue(accuracy, null)
        reject_perm, k, thr = kim_order_statistic_rule(accuracy, null, alpha)
    elif permutation == "full":
        res = full_permutation_null(
            Xa,
            ya,
            train,
            n_permutations=P,
            seed=seed,
            test_size=test_size,
            classifier=None if _is_default_logistic(classifier) else classifier,
            use_ray=use_ray,
            address=address,
            max_workers=max_workers,
            device=device,
            dtype=solver_dtype,
            progress=progress,
        )
        P = res.n_permutations
        null = res.null_accuracies
        perm_obs = res.observed_accuracy
        p_perm = permutation_pvalue(perm_obs, null)
        reject_perm = bool(p_perm <= alpha)
        notes.extend(res.notes)
        full_info = {
            "backend": res.backend,
            "solver": res.solver,
            "converged_fraction": res.converged_fraction,
            "n_groups": res.n_groups,
            "group_size": res.group_size,
            "wall_s": res.wall_s,
            "n_permutations_requested": int(n_permutations),
            "solver_dtype": solver_dtype if _is_default_logistic(classifier) else None,
        }

    coef = getattr(est, "coef_", None)
    intercept = getattr(est, "intercept_", None)
    return C2STResult(
        accuracy=accuracy,
        confusion=cm,
        e0=float(e0),
        e1=float(e1),
        te0=te0,
        te1=te1,
        statistic=float(T),
        p_asymptotic=float(p_asym),
        p_permutation=float(p_perm),
        null_accuracies=np.asarray(null, dtype=np.float64),
        reject_asymptotic=bool(p_asym <= alpha),
        reject_permutation=reject_perm,
        alpha=alpha,
        permutation=permutation,
        n_permutations=P if permutation != "none" else 0,
        seed=seed,
        test_size=test_size,
        permutation_observed_accuracy=perm_obs,
        order_statistic_k=k,
        order_statistic_threshold=thr,
        train_index=train,
        test_index=test,
        y_test=y_test,
        scores_test=scores,
        coef=None if coef is None else np.asarray(coef, dtype=np.float64).reshape(-1),
        intercept=None if intercept is None else float(np.asarray(intercept).reshape(-1)[0]),
        classifier_name=type(est).__name__,
        converged=converged,
        n_iter=n_iter,
        standardize=bool(standardize),
        warnings=tuple(notes),
        full_permutation_info=full_info,
        estimator=est,
    )
