"""The classifier two-sample test (C2ST) of the study, with its bugs fixed.

Two groups of samples (``y = 0``: type 0, peripheral/blurred; ``y = 1``: type 1,
foveal/sharp) are compared by how well a classifier tells them apart on held-out data.
Under H0: P0 = P1 no classifier beats chance, so the balanced error ``E = (e0 + e1) / 2``
is 1/2; a significantly lower error rejects H0.

References
----------
.. [1] Kim, I., Ramdas, A., Singh, A. & Wasserman, L. (2021). Classification accuracy as a
   proxy for two-sample testing. Annals of Statistics 49(1), 411-434 (arXiv:1602.02210).
.. [2] Lopez-Paz, D. & Oquab, M. (2017). Revisiting classifier two-sample tests. ICLR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fovea_ray.stats import _seeding
from fovea_ray.stats._validate import check_count, check_fraction, check_precision, check_xy
from fovea_ray.stats.classifier import OPTIMALITY_TOL, ClassifierSpec, LinearFit, fit_split
from fovea_ray.stats.decision import required_permutations, resolve_permutations
from fovea_ray.stats.executor import Executor
from fovea_ray.stats.kim import (
    class_errors,
    kim_asymptotic_test,
    kim_min_test_per_class,
    kim_order_statistic_rule,
    permutation_pvalue,
)
from fovea_ray.stats.outcome import TestOutcome
from fovea_ray.stats.permutation import full_permutation_null, half_permutation_null

__all__ = [
    "C2STFit",
    "C2STResult",
    "MIN_TEST_PER_CLASS",
    "c2st_split",
    "classifier_two_sample_test",
    "default_classifier",
]

PERMUTATIONS = ("none", "half", "full")
#: Below this many held-out samples of a class the battery skips the classifier tests.
MIN_TEST_PER_CLASS = 10
_CONFUSION_ORIENTATION = "confusion[true][predicted], class order (0, 1): [[TN, FP], [FN, TP]]"
_HALF_RULE = "reject if accuracy > k-th smallest of the P+1 accuracies, k = ceil((1-alpha)(1+P))"


def default_classifier():
    """The study's classifier: ``LogisticRegression`` (L2, C=1, lbfgs, max_iter=500).

    (``classifier="study"``; the test's default is ``"standardized"``, see
    :mod:`fovea_ray.stats.classifier`.)
    """
    return ClassifierSpec("study").estimator_for_refits()


def c2st_split(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The test's stratified split ``(train, test)`` of ``y`` (the one place it is drawn)."""
    return _seeding.stratified_split(y, test_size, _seeding.stream(seed, _seeding.SPLIT))


@dataclass(frozen=True, eq=False)
class C2STFit:
    """The fitted parts behind a :class:`C2STResult` (``result.fit``; not in records).

    Attributes
    ----------
    train_index, test_index : ndarray
        The stratified split (row indices into ``X``).
    y_test, scores_test : ndarray
        Held-out labels and out-of-sample classifier scores (``decision_function``; else
        the log-odds of ``predict_proba``).
    coef, intercept : ndarray or None, float or None
        The fitted linear model (None for non-linear classifiers), in the classifier's
        feature space (standardised columns for ``"standardized"``).
    estimator : object
        The fitted scikit-learn classifier (None for the batched solver).
    linear : LinearFit
        The one fit every test of the split uses (:func:`fovea_ray.stats.classifier.fit_split`).
    """

    train_index: np.ndarray = field(repr=False)
    test_index: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    scores_test: np.ndarray = field(repr=False)
    coef: np.ndarray | None = field(repr=False)
    intercept: float | None
    estimator: Any = field(default=None, repr=False)
    linear: LinearFit | None = field(default=None, repr=False)

    @property
    def y_pred(self) -> np.ndarray:
        """Held-out predictions (the sign of ``scores_test``)."""
        return (self.scores_test > 0).astype(np.int8)


@dataclass(frozen=True, eq=False)
class C2STResult:
    """Result of :func:`classifier_two_sample_test` (scipy.stats style: ``statistic``, ``pvalue``).

    Attributes
    ----------
    accuracy : float
        Held-out accuracy ``alpha_*`` of the classifier.
    confusion : ndarray (2, 2)
        Int counts ``confusion[true, predicted]``, class order (0, 1): ``[[TN, FP], [FN, TP]]``.
        (The study's ``CNF`` is ``[[TP, FP], [FN, TN]]``; see
        :func:`fovea_ray.stats.kim.confusion_from_paper`.)
    e0, e1 : float
        Error rates on true class 0 (predicted 1) and true class 1 (predicted 0).
    te0, te1 : int
        Held-out counts of true class 0 and 1 (the denominators of e0, e1).
    statistic : float
        Kim's ``T = (2E - 1) / sqrt(e0(1-e0)/te0 + e1(1-e1)/te1)``, ``E = (e0+e1)/2``.
    p_asymptotic : float
        ``Phi(T)``.
    p_permutation : float
        ``(1 + #{null >= observed}) / (P + 1)``; NaN when ``permutation="none"``.
    null_accuracies : ndarray (P,)
        Permutation accuracies (empty for "none").
    reject_asymptotic : bool
        ``p_asymptotic <= alpha`` (equivalently ``T <= -z_alpha``).
    reject_permutation : bool or None
        "half": Kim's order-statistic rule ``alpha_* > alpha^(k)``,
        ``k = ceil((1 - alpha)(1 + P))``; "full": ``p_permutation <= alpha``; None for "none".
    asymptotic_reliable : bool
        Whether both held-out counts reach :func:`fovea_ray.stats.kim_min_test_per_class`
        at ``alpha``; when not, the deciding test is the permutation test.
    alpha, permutation, n_permutations, seed, test_size
        The settings used (``n_permutations``: P as used; "full" rounds P up to fill
        equal groups, see :mod:`fovea_ray.stats.permutation`).
    permutation_observed_accuracy : float or None
        The observed statistic the permutation p-value compares with: ``accuracy`` for
        "half"; for "full" with the default classifier, the accuracy of the batched
        solver's exact optimum on the same split (the same procedure as the null fits).
    order_statistic_k, order_statistic_threshold
        ``k`` and ``alpha^(k)`` ("half").
    classifier_name, converged, n_iter
        What was fitted (``"standardized"``, ``"study"``, ``"unscaled"`` or the
        estimator's class name) and whether it reached its optimum: the relative gradient
        norm ``optimality`` of the L2-logistic objective is at most
        :data:`fovea_ray.stats.classifier.OPTIMALITY_TOL` (None when not measurable).
    optimality : float or None
        That relative gradient norm.
    objective_gap : float or None
        For a scikit-learn logistic fit (the study's): its objective's relative excess
        over an independent solver's optimum; converged means at most 1e-6.
    classifier : dict
        :meth:`fovea_ray.stats.classifier.ClassifierSpec.to_record`.
    warnings : tuple of str
        Small-sample and convergence notes (never fatal).
    full_permutation_info : dict
        The full permutation test's record (:meth:`FullPermutationNull.to_record`).
    fit : C2STFit
        The split, the held-out scores and the estimator.
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
    asymptotic_reliable: bool
    alpha: float
    permutation: str
    n_permutations: int
    seed: int
    test_size: float
    permutation_observed_accuracy: float | None
    order_statistic_k: int | None
    order_statistic_threshold: float | None
    classifier_name: str
    converged: bool | None
    n_iter: int | None
    optimality: float | None = None
    objective_gap: float | None = None
    classifier: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    full_permutation_info: dict = field(default_factory=dict, repr=False)
    fit: C2STFit | None = field(default=None, repr=False)

    @property
    def pvalue(self) -> float:
        """The deciding p-value: the permutation test's when one ran, else the asymptotic one."""
        return self.p_asymptotic if self.permutation == "none" else self.p_permutation

    @property
    def deciding_test(self) -> str:
        """``kim_asymptotic``, ``kim_half_permutation`` or ``full_permutation``."""
        return {"none": "kim_asymptotic", "half": "kim_half_permutation", "full": "full_permutation"}[self.permutation]

    @property
    def y_pred(self) -> np.ndarray:
        """Held-out predictions (``fit.y_pred``)."""
        return self.fit.y_pred

    def accuracy_ci(self, level: float = 0.95) -> tuple[float, float]:
        """Clopper-Pearson (exact binomial) interval of the held-out accuracy."""
        n = self.te0 + self.te1
        correct = int(self.confusion[0, 0] + self.confusion[1, 1])
        return accuracy_ci(correct, n, level)

    def outcomes(self) -> list[TestOutcome]:
        """The Kim tests as :class:`TestOutcome` records (asymptotic, half permutation)."""
        out = [
            TestOutcome(
                "kim_asymptotic",
                self.statistic,
                self.p_asymptotic,
                self.alpha,
                alternative="less",
                details={"accuracy": self.accuracy},
            )
        ]
        if self.permutation == "half":
            out.append(
                TestOutcome(
                    "kim_half_permutation",
                    self.accuracy,
                    self.p_permutation,
                    self.alpha,
                    alternative="greater",
                    details={
                        "n_permutations": self.n_permutations,
                        "order_statistic_k": self.order_statistic_k,
                        "order_statistic_threshold": self.order_statistic_threshold,
                        "reject_order_statistic_rule": self.reject_permutation,
                    },
                )
            )
        else:
            out.append(TestOutcome.skip("kim_half_permutation", "permutations = 0", self.alpha))
        return out

    def to_record(self, *, null_accuracies: bool = False) -> dict[str, Any]:
        """The JSON-able ``c2st`` record of ``results.json`` (:mod:`fovea_ray.stats.results`).

        ``null_accuracies``: include the half-permutation null (figure data).
        """
        low, high = self.accuracy_ci()
        rec: dict[str, Any] = {
            "accuracy": self.accuracy,
            "accuracy_ci": [low, high],
            "accuracy_ci_method": "clopper-pearson 95%",
            "confusion": self.confusion.tolist(),
            "confusion_orientation": _CONFUSION_ORIENTATION,
            "e0": self.e0,
            "e1": self.e1,
            "te0": self.te0,
            "te1": self.te1,
            "statistic": self.statistic,
            "p_asymptotic": self.p_asymptotic,
            "reject_asymptotic": self.reject_asymptotic,
            "asymptotic_reliable": self.asymptotic_reliable,
            "min_test_per_class": kim_min_test_per_class(self.alpha),
            "deciding_test": self.deciding_test,
            "classifier": self.classifier_name,
            "classifier_spec": dict(self.classifier),
            "converged": self.converged,
            "optimality": self.optimality,
            "objective_gap": self.objective_gap,
            "n_iter": self.n_iter,
            "n_train": int(self.fit.train_index.size) if self.fit is not None else None,
            "n_test": self.te0 + self.te1,
        }
        if self.permutation == "half":
            rec["half_permutation"] = {
                "n_permutations": self.n_permutations,
                "p": self.p_permutation,
                "reject": self.reject_permutation,
                "rule": _HALF_RULE,
                "k": self.order_statistic_k,
                "threshold": self.order_statistic_threshold,
                "observed_accuracy": self.accuracy,
                "null_accuracies": self.null_accuracies.tolist() if null_accuracies else None,
            }
        elif self.permutation == "full" and self.full_permutation_info:
            rec["full_permutation"] = dict(self.full_permutation_info)
        return rec


def accuracy_ci(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval for an accuracy of ``correct / n``."""
    from scipy import stats

    if n <= 0:
        return (math.nan, math.nan)
    ci = stats.binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def _notes(fit: LinearFit, te0: int, te1: int, alpha: float, permutation: str, P: int) -> list[str]:
    notes = []
    if fit.converged is False:
        how = (
            f"objective {fit.objective_gap:.2g} above the optimum an independent solver finds"
            if fit.objective_gap is not None
            else f"relative gradient norm {fit.optimality:.2g} > {OPTIMALITY_TOL:g}"
        )
        notes.append(
            f"the {fit.spec.name} classifier stopped before its optimum ({how}, after {fit.n_iter} iterations"
            + (
                ", as the study's max_iter=500 allows"
                if fit.spec.name == "study" and (fit.n_iter or 0) >= 500
                else "; its solver's own stopping rule ended it"
            )
            + "); its held-out predictions are those of that fit, not of the optimum"
        )
    n_min = kim_min_test_per_class(alpha)
    if min(te0, te1) < n_min:
        decided = (
            "the decision rests on the permutation test"
            if permutation != "none"
            else "run a permutation test (permutation='half' or 'full') to decide"
        )
        notes.append(
            f"only {te0} and {te1} held-out samples of class 0 and 1: at alpha = {alpha:g} Kim's asymptotic "
            f"test needs >= {n_min} per class (below, it rejects too often); {decided}"
        )
    if permutation != "none" and 1.0 / (P + 1) > alpha * (1 + 1e-12):
        notes.append(
            f"P = {P} permutations cannot reject at alpha = {alpha} (smallest p is 1/(P+1) = {1 / (P + 1):.3g}); "
            f"needs P >= {required_permutations(alpha)}"
        )
    return notes


def classifier_two_sample_test(
    X,
    y,
    *,
    test_size: float = 0.5,
    alpha: float = 0.01,
    n_permutations: int | str = 100,
    permutation: str = "half",
    classifier=None,
    seed: int = 0,
    groups=None,
    device: str = "cpu",
    precision: str = "mixed",
    executor: Executor | None = None,
) -> C2STResult:
    """Classifier two-sample test of H0: P0 = P1 (Kim et al.; the study's test, fixed).

    1. Stratified split: ``round(test_size * n_c)`` samples of each class ``c`` held out
       (seeded by ``seed``; :func:`c2st_split`).
    2. One fit of ``classifier`` on the training part (:func:`fovea_ray.stats.classifier.fit_split`;
       default ``"standardized"``: features standardised with the training split's
       statistics, L2 logistic regression at its optimum). Every result below uses it.
    3. Kim's asymptotic test from the held-out confusion (:func:`kim_asymptotic_test`),
       with ``e0``/``e1`` over the TRUE class counts.
    4. Optional permutation test: ``"half"`` permutes the held-out labels ``P`` times with
       the fitted model fixed and decides by Kim's order-statistic rule; ``"full"``
       permutes the labels of the whole sample, re-splits and refits ``P`` times with the
       same procedure (standardising with each re-split's training rows) and decides by
       ``p <= alpha``; its observed statistic is the accuracy of the fit of step 2. Both
       report the ``(1 + #{null >= observed}) / (P + 1)`` p-value.

    Parameters
    ----------
    X : array (n, d)
        Features.
    y : array (n,)
        Labels in {0, 1} (1 = type 1).
    test_size : float
        Held-out fraction (the study's kappa = 1/2).
    alpha : float
        Level of the decisions.
    n_permutations : int or "auto"
        P; ``"auto"``: the smallest P that can reject at ``alpha`` (``ceil(1/alpha) - 1``,
        :func:`fovea_ray.stats.decision.required_permutations`).
    permutation : {"none", "half", "full"}
    classifier : {"standardized", "unscaled", "study"} or estimator, optional
        The classifier (:mod:`fovea_ray.stats.classifier`; default ``"standardized"``).
        ``"study"`` is the study's ``LogisticRegression(C=1, lbfgs, max_iter=500)`` on
        unscaled features. Any sklearn-style estimator with fit and decision_function
        (or predict_proba) is cloned before fitting.
    seed : int
        Master seed of the split and the permutations.
    groups : array (d,), optional
        Each column's channel: the standardized classifier scales a channel's columns
        together (:func:`fovea_ray.stats.classifier.train_scaling`).
    device, precision : str
        Where and in what precision the batched solver of "full" runs
        (:func:`fovea_ray.stats.full_permutation_null`).
    executor : Executor, optional
        Where the groups of "full" run (default: in this process;
        :class:`fovea_ray.cluster.RayExecutor` for Ray). The result does not depend on it.

    Returns
    -------
    C2STResult

    Raises
    ------
    ValueError
        Bad shapes, NaN, labels other than 0/1, fewer than 2 samples of a class, or bad
        options.
    """
    Xa, ya = check_xy(X, y)
    test_size = check_fraction("test_size", test_size)
    alpha = check_fraction("alpha", alpha)
    seed = _seeding.check_seed(seed)
    precision = check_precision(precision)
    spec = ClassifierSpec.resolve(classifier)
    if permutation not in PERMUTATIONS:
        raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {permutation!r}")
    P = check_count(
        "n_permutations", resolve_permutations(n_permutations, alpha), minimum=0 if permutation == "none" else 1
    )
    train, test = c2st_split(ya, test_size, seed)
    lin = fit_split(Xa, ya, train, spec, groups)
    y_test = ya[test]
    pred = lin.predictions(test)
    cm = np.zeros((2, 2), dtype=np.int64)
    np.add.at(cm, (y_test, pred), 1)
    e0, e1, te0, te1 = class_errors(cm)
    T, p_asym = kim_asymptotic_test(cm)
    notes = _notes(lin, te0, te1, alpha, permutation, P)
    accuracy = float(np.mean(pred == y_test))
    perm: dict[str, Any] = {"null": np.zeros(0), "p": math.nan, "reject": None, "k": None, "thr": None, "obs": None}
    full_info: dict = {}
    if permutation == "half":
        null = half_permutation_null(y_test, pred, P, seed)
        reject, k, thr = kim_order_statistic_rule(accuracy, null, alpha)
        perm = {"null": null, "p": permutation_pvalue(accuracy, null), "reject": reject, "k": k, "thr": thr}
        perm["obs"] = accuracy
    elif permutation == "full":
        res = full_permutation_null(
            Xa,
            ya,
            train,
            n_permutations=P,
            seed=seed,
            test_size=test_size,
            classifier=spec,
            groups=groups,
            device=device,
            precision=precision,
            executor=executor,
            observed=accuracy,
        )
        P_requested, P = P, res.n_permutations
        p_full = res.pvalue
        perm = {"null": res.null_accuracies, "p": p_full, "reject": bool(p_full <= alpha), "k": None, "thr": None}
        perm["obs"] = res.observed_accuracy
        notes.extend(res.notes)
        full_info = res.to_record(alpha=alpha, n_requested=int(P_requested), precision=precision)
    fit = C2STFit(
        train_index=train,
        test_index=test,
        y_test=y_test,
        scores_test=lin.decision[test],
        coef=lin.coef,
        intercept=lin.intercept,
        estimator=lin.estimator,
        linear=lin,
    )
    return C2STResult(
        accuracy=accuracy,
        confusion=cm,
        e0=float(e0),
        e1=float(e1),
        te0=te0,
        te1=te1,
        statistic=float(T),
        p_asymptotic=float(p_asym),
        p_permutation=float(perm["p"]),
        null_accuracies=np.asarray(perm["null"], dtype=np.float64),
        reject_asymptotic=bool(p_asym <= alpha),
        reject_permutation=perm["reject"],
        asymptotic_reliable=min(te0, te1) >= kim_min_test_per_class(alpha),
        alpha=alpha,
        permutation=permutation,
        n_permutations=P if permutation != "none" else 0,
        seed=seed,
        test_size=test_size,
        permutation_observed_accuracy=perm["obs"],
        order_statistic_k=perm["k"],
        order_statistic_threshold=perm["thr"],
        classifier_name=spec.name if spec.name != "custom" else type(spec.estimator).__name__,
        converged=lin.converged,
        n_iter=lin.n_iter,
        optimality=lin.optimality,
        objective_gap=lin.objective_gap,
        classifier=spec.to_record(),
        warnings=tuple(notes),
        full_permutation_info=full_info,
        fit=fit,
    )
