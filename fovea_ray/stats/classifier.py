"""The linear classifier of the two-sample tests: one fit per split, at its optimum.

Every result of a layer (Kim's asymptotic test, the half permutation, the observed
statistic of the full permutation, the score tests, the coefficient figures and the
held-out predictions that networks are compared on) comes from the one fit that
:func:`fit_split` makes on the layer's split.

Two classifiers are named (``classifier=`` in :func:`fovea_ray.stats.classifier_two_sample_test`,
``--classifier`` on the command line):

``"standardized"`` (the default)
    Each column is centred on its *training-split* mean and divided by the training-split
    standard deviation of its channel: with ``groups`` (the battery passes each column's
    channel), the root mean square of the SDs of that channel's statistics (mean, max,
    ...), so a channel's statistics keep their relative sizes (a max varies more than a
    mean: peakiness is part of the code) while the arbitrary unit of each channel goes;
    without ``groups``, each column's own SD. A scale of 0 becomes 1. Then
    L2-regularised logistic regression with
    ``C = 1`` (scikit-learn's objective ``0.5 ||w||^2 + C sum log(1 + exp(-s z))``) is
    fitted by the batched solver (:mod:`fovea_ray.stats.solver`) in float64 until the
    gradient norm has fallen to ``1e-9`` of its value at zero. Real activations span five
    orders of magnitude in channel scale (column SDs from 0 to 27,544 at layer4.2 of an
    R101); without scaling, the penalty all but silences the small-scale channels, and
    the study's lbfgs stops far from the optimum. Every permutation refit standardises
    with its own training split, so the null sees the same procedure.
``"unscaled"``
    The study's objective (unscaled features, ``C = 1``) fitted to its optimum by the
    batched solver: what the study's fit would give had it converged.
``"study"``
    The study's ``LogisticRegression(C=1, solver="lbfgs", max_iter=500)`` on unscaled
    features, for reproducing the paper's arithmetic. Its fit often stops before the
    optimum; that is measured and reported (``converged``, ``optimality``), not hidden.

Any scikit-learn estimator can be passed instead; it is cloned and refitted per permutation.

Convergence means the optimum was reached, judged without trusting the solver's own stop
(``n_iter_ < max_iter`` is no evidence of it):

* a batched fit stops only when its *relative gradient norm*
  ``||grad f(w, b)|| / ||grad f(0, 0)||`` on the training rows is at most ``1e-9``, and
  converged means that norm (:func:`relative_gradient`, recomputed in float64 in the
  original coordinates) is at most :data:`OPTIMALITY_TOL`;
* a scikit-learn L2-logistic fit (the study's) is compared with an independent solver:
  the batched solver's optimum of the same objective on the same rows. Converged means
  its objective is within a relative :data:`OBJECTIVE_TOL` of that optimum
  (``objective_gap``). A relative gradient alone would not do here: on unscaled
  activations it is dominated by the large-scale channels, and reads as small while the
  small-scale channels' coefficients are still far from their optimum.

References
----------
.. [1] Kim, I., Ramdas, A., Singh, A. & Wasserman, L. (2021). Classification accuracy as a
   proxy for two-sample testing. Annals of Statistics 49(1), 411-434.
.. [2] Nocedal, J. & Wright, S. (2006). Numerical Optimization, 2nd ed., ch. 2 (first-order
   optimality) and ch. 7 (L-BFGS). Springer.
.. [3] Hastie, T., Tibshirani, R. & Friedman, J. (2009). The Elements of Statistical
   Learning, 2nd ed., sec. 3.4.1: ridge penalties are not scale invariant, so inputs are
   standardised first.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_C",
    "DEFAULT_CLASSIFIER",
    "OBJECTIVE_TOL",
    "OPTIMALITY_TOL",
    "ClassifierSpec",
    "LinearFit",
    "fit_split",
    "l2_logistic_objective",
    "relative_gradient",
    "standardize_with",
    "train_scaling",
]

#: The named classifiers (``--classifier``).
CLASSIFIERS = ("standardized", "study", "unscaled")
DEFAULT_CLASSIFIER = "standardized"
#: The L2 weight of both named classifiers (scikit-learn's ``C``; the study's value).
DEFAULT_C = 1.0
#: A batched fit is at its optimum when its relative gradient norm is at most this.
OPTIMALITY_TOL = 1e-6
#: A scikit-learn fit is at its optimum when its objective is within this (relative) of the
#: independent solver's optimum.
OBJECTIVE_TOL = 1e-6
#: The study's iteration limit.
STUDY_MAX_ITER = 500


@dataclass(frozen=True)
class ClassifierSpec:
    """Which classifier a test fits: ``"standardized"``, ``"study"`` or ``"custom"``.

    Attributes
    ----------
    name : str
        ``"standardized"``, ``"study"`` or ``"custom"`` (a user's estimator).
    C : float
        The L2 weight of the named classifiers.
    estimator : object or None
        The user's scikit-learn estimator (``"custom"`` only).
    """

    name: str = DEFAULT_CLASSIFIER
    C: float = DEFAULT_C
    estimator: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.name not in (*CLASSIFIERS, "custom"):
            raise ValueError(f"classifier must be one of {CLASSIFIERS} or an estimator, got {self.name!r}")
        if not (self.C > 0 and math.isfinite(self.C)):
            raise ValueError(f"C must be positive and finite, got {self.C}")
        if self.name == "custom" and self.estimator is None:
            raise ValueError("a custom classifier needs its estimator")

    @classmethod
    def resolve(cls, classifier: Any = None) -> ClassifierSpec:
        """``None`` (the default), a name in :data:`CLASSIFIERS`, a spec, or an estimator."""
        if classifier is None:
            return cls()
        if isinstance(classifier, ClassifierSpec):
            return classifier
        if isinstance(classifier, str):
            return cls(classifier)
        if not hasattr(classifier, "fit"):
            raise ValueError(f"classifier must be one of {CLASSIFIERS} or an estimator with fit(), got {classifier!r}")
        return cls("custom", estimator=classifier)

    @property
    def standardizes(self) -> bool:
        """Whether the features are z-scored with training-split statistics first."""
        return self.name == "standardized"

    @property
    def batched(self) -> bool:
        """Whether permutation refits can run on the batched solver (the same objective)."""
        return self.name in ("standardized", "unscaled")

    def estimator_for_refits(self):
        """A fresh scikit-learn estimator for the non-batched classifiers."""
        from sklearn.base import clone

        if self.name == "study":
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(C=self.C, solver="lbfgs", max_iter=STUDY_MAX_ITER)
        if self.name == "custom":
            return clone(self.estimator)
        raise ValueError(f"the {self.name} classifier refits on the batched solver")

    def to_record(self) -> dict[str, Any]:
        """What ``results.json`` says about the classifier that decided."""
        if self.name == "custom":
            return {"name": "custom", "model": type(self.estimator).__name__, "preprocessing": "as the estimator does"}
        preprocessing, solver = _DESCRIPTIONS[self.name]
        return {
            "name": self.name,
            "model": "L2 logistic regression",
            "C": self.C,
            "preprocessing": preprocessing,
            "solver": solver,
        }


_BATCHED_SOLVER = "batched L-BFGS, float64, to a relative gradient norm of 1e-9"
#: ``(preprocessing, solver)`` of each named classifier, as results.json states them.
_DESCRIPTIONS = {
    "standardized": (
        "centre on the training split's column means, divide by the training split's SD per channel "
        "(RMS over the channel's statistics); in every permutation refit too",
        _BATCHED_SOLVER,
    ),
    "unscaled": ("none (the study's objective, fitted to its optimum)", _BATCHED_SOLVER),
    "study": ("none (the study's)", f"scikit-learn lbfgs, max_iter={STUDY_MAX_ITER}"),
}


def train_scaling(X: np.ndarray, train: np.ndarray, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` of every column over the training rows.

    ``scale`` is the column's SD, or with ``groups`` (one integer per column: its
    channel) the root mean square of the SDs of the columns in its group. A scale of 0
    (a constant column or channel) becomes 1.
    """
    Xt = X[np.asarray(train)]
    mean = Xt.mean(axis=0)
    sd = Xt.std(axis=0)
    if groups is not None:
        g = np.asarray(groups)
        if g.shape != (X.shape[1],):
            raise ValueError(f"groups must give one group per column ({X.shape[1]}), got shape {g.shape}")
        _, inverse = np.unique(g, return_inverse=True)
        ms = np.bincount(inverse, weights=sd * sd) / np.bincount(inverse)
        sd = np.sqrt(ms)[inverse]
    sd = sd.copy()
    sd[~(sd > 0)] = 1.0
    return mean, sd


def standardize_with(X: np.ndarray, train: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """``X`` centred and scaled with the training rows' statistics (:func:`train_scaling`)."""
    mean, sd = train_scaling(X, train, groups)
    return (X - mean) / sd


def relative_gradient(
    X: np.ndarray, y: np.ndarray, train: np.ndarray, coef: np.ndarray, intercept: float, C: float
) -> float:
    """``||grad f(w, b)|| / ||grad f(0, 0)||`` of the L2-logistic objective on the training rows.

    ``f(w, b) = 0.5 ||w||^2 + C * sum_i log(1 + exp(-s_i (x_i . w + b)))`` over the
    training rows, ``s_i = 2 y_i - 1``, the intercept unpenalised: scikit-learn's
    ``LogisticRegression(penalty="l2")`` objective. 0 at the optimum; first-order
    optimality is the only convergence criterion that does not depend on the solver.
    """
    from scipy.special import expit

    Xt = np.asarray(X, dtype=np.float64)[np.asarray(train)]
    yt = np.asarray(y, dtype=np.float64)[np.asarray(train)]
    w = np.asarray(coef, dtype=np.float64).reshape(-1)
    r = expit(Xt @ w + float(intercept)) - yt
    g = np.concatenate([w + C * (Xt.T @ r), [C * r.sum()]])
    r0 = 0.5 - yt
    g0 = np.concatenate([C * (Xt.T @ r0), [C * r0.sum()]])
    den = float(np.linalg.norm(g0))
    return float(np.linalg.norm(g)) / den if den > 0 else float(np.linalg.norm(g))


@dataclass(frozen=True, eq=False)
class LinearFit:
    """The one fit of a layer's split (:func:`fit_split`).

    Attributes
    ----------
    decision : ndarray (n,)
        Decision values of every row (training and held-out); ``> 0`` predicts type 1.
    coef : ndarray (d,) or None
        Coefficients in the classifier's feature space (z-scored columns for
        ``"standardized"``, raw columns for ``"study"``); None for non-linear estimators.
    intercept : float or None
    converged : bool or None
        Whether the fit reached its optimum (``optimality <= OPTIMALITY_TOL``); None
        when not measurable (a non-logistic custom estimator).
    optimality : float or None
        The relative gradient norm (:func:`relative_gradient`).
    objective_gap : float or None
        For a scikit-learn L2-logistic fit: ``(f - f*) / f*`` against the independent
        solver's optimum ``f*`` (None for the batched fits, which are the optimum).
    n_iter : int or None
        Solver iterations.
    estimator : object or None
        The fitted scikit-learn estimator (None for the batched solver).
    spec : ClassifierSpec
    """

    decision: np.ndarray = field(repr=False)
    coef: np.ndarray | None = field(repr=False)
    intercept: float | None
    converged: bool | None
    optimality: float | None
    n_iter: int | None
    estimator: Any = field(repr=False)
    spec: ClassifierSpec
    objective_gap: float | None = None

    def predictions(self, rows: np.ndarray) -> np.ndarray:
        """Predicted labels (0/1, int8) of ``rows``."""
        return (self.decision[np.asarray(rows)] > 0).astype(np.int8)


def fit_split(
    X: np.ndarray, y: np.ndarray, train: np.ndarray, spec: ClassifierSpec, groups: np.ndarray | None = None
) -> LinearFit:
    """Fit ``spec``'s classifier on the training rows of ``(X, y)``; decision values for every row.

    Parameters
    ----------
    X : ndarray (n, d)
        Float64 features (raw: the standardisation, if any, happens here).
    y : ndarray (n,)
        Labels in {0, 1}.
    train : ndarray
        Training row indices.
    spec : ClassifierSpec
    groups : ndarray, optional
        Each column's channel, for the standardized classifier's per-channel scale.

    Returns
    -------
    LinearFit
    """
    train = np.sort(np.asarray(train))
    if spec.batched:
        from fovea_ray.stats.solver import fit_logistic_batched, prepare_design

        Xs = standardize_with(X, train, groups) if spec.standardizes else X
        design = prepare_design(Xs, C=spec.C, curvature_rows=int(train.size), basis_rows=train)
        fit = fit_logistic_batched(design, np.asarray(y).astype(np.int8), train_rows=train, precision="float64")
        coef, intercept = fit.coef[0, :, 0], float(fit.intercept[0, 0])
        opt = relative_gradient(Xs, y, train, coef, intercept, spec.C)
        return LinearFit(
            decision=fit.decision[0, :, 0].copy(),
            coef=coef.copy(),
            intercept=intercept,
            converged=bool(opt <= OPTIMALITY_TOL),
            optimality=opt,
            n_iter=int(fit.n_iter),
            estimator=None,
            spec=spec,
        )
    est = spec.estimator_for_refits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the result says whether it converged
        est.fit(X[train], np.asarray(y)[train])
    decision = _decision(est, X)
    coef = getattr(est, "coef_", None)
    intercept = getattr(est, "intercept_", None)
    coef = None if coef is None else np.asarray(coef, dtype=np.float64).reshape(-1)
    intercept = None if intercept is None else float(np.asarray(intercept).reshape(-1)[0])
    n_iter = int(np.max(est.n_iter_)) if hasattr(est, "n_iter_") else None
    opt = gap = None
    if _is_l2_logistic(est) and coef is not None and coef.size == X.shape[1]:
        C = float(est.C)
        opt = relative_gradient(X, y, train, coef, intercept or 0.0, C)
        gap = _objective_gap(X, y, train, coef, intercept or 0.0, C)
    return LinearFit(
        decision=decision,
        coef=coef,
        intercept=intercept,
        converged=None if gap is None else bool(gap <= OBJECTIVE_TOL),
        optimality=opt,
        n_iter=n_iter,
        estimator=est,
        spec=spec,
        objective_gap=gap,
    )


def l2_logistic_objective(X, y, train, coef, intercept: float, C: float) -> float:
    """``0.5 ||w||^2 + C * sum log(1 + exp(-s (x . w + b)))`` over the training rows."""
    Xt = np.asarray(X, dtype=np.float64)[np.asarray(train)]
    s = 2.0 * np.asarray(y, dtype=np.float64)[np.asarray(train)] - 1.0
    w = np.asarray(coef, dtype=np.float64).reshape(-1)
    return float(0.5 * w @ w + C * np.logaddexp(0.0, -s * (Xt @ w + intercept)).sum())


def _objective_gap(X, y, train, coef, intercept: float, C: float) -> float:
    """``(f - f*) / f*``: the fit's objective against the batched solver's optimum of it."""
    from fovea_ray.stats.solver import fit_logistic_batched, prepare_design

    design = prepare_design(X, C=C, curvature_rows=int(np.size(train)), basis_rows=train)
    ref = fit_logistic_batched(design, np.asarray(y).astype(np.int8), train_rows=train, precision="float64")
    f_star = min(float(ref.objective[0, 0]), l2_logistic_objective(X, y, train, coef, intercept, C))
    f = l2_logistic_objective(X, y, train, coef, intercept, C)
    return (f - f_star) / max(abs(f_star), np.finfo(np.float64).tiny)


def _is_l2_logistic(est) -> bool:
    from sklearn.linear_model import LogisticRegression

    penalty = getattr(est, "penalty", "l2")
    return isinstance(est, LogisticRegression) and penalty in ("l2", "deprecated") and est.fit_intercept


def _decision(est, X: np.ndarray) -> np.ndarray:
    """Decision values (``decision_function``; else the log-odds of ``predict_proba``);
    their sign is the prediction."""
    if hasattr(est, "decision_function"):
        s = np.asarray(est.decision_function(X), dtype=np.float64)
        return s.reshape(-1) if s.ndim == 1 else s[:, -1]
    if hasattr(est, "predict_proba"):
        p = np.clip(np.asarray(est.predict_proba(X), dtype=np.float64)[:, 1], 1e-15, 1 - 1e-15)
        return np.log(p) - np.log1p(-p)
    # Only labels: +-1 keeps "decision > 0 is type 1".
    return np.where(np.asarray(est.predict(X)) == 1, 1.0, -1.0)
