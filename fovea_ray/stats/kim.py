"""Kim et al.'s classifier two-sample tests: the asymptotic Z test and the order-statistic
rule of the (half-)permutation test, plus the finite-sample permutation p-value.

Confusion matrices in fovea-ray are always ``confusion[true, predicted]`` with class
order (0, 1)::

                predicted 0   predicted 1
    true 0         TN            FP        (te0 = TN + FP)
    true 1         FN            TP        (te1 = FN + TP)

The study report's matrix ``CNF`` is oriented differently (``[[TP, FP], [FN, TN]]``,
columns = true class 1 then 0); :func:`confusion_from_paper` converts it.

References
----------
.. [1] Kim, I., Ramdas, A., Singh, A. & Wasserman, L. (2016/2021). Classification accuracy as
   a proxy for two-sample testing. arXiv:1602.02210; Annals of Statistics 49(1), 411-434.
.. [2] Phipson, B. & Smyth, G. K. (2010). Permutation p-values should never be zero.
   Statistical Applications in Genetics and Molecular Biology 9(1).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from fovea_ray.stats._validate import check_fraction, check_statistic

__all__ = [
    "class_errors",
    "confusion_from_paper",
    "kim_asymptotic_test",
    "kim_min_test_per_class",
    "kim_order_statistic_rule",
    "permutation_pvalue",
]


def _check_confusion(confusion) -> np.ndarray:
    cm = np.asarray(confusion)
    if cm.shape != (2, 2):
        raise ValueError(f"confusion must be 2 x 2 (rows = true class, columns = predicted), got shape {cm.shape}")
    if not np.all(np.isfinite(cm)) or np.any(cm < 0):
        raise ValueError(f"confusion must hold non-negative counts, got {cm.tolist()}")
    if np.any(cm != np.round(cm)):
        raise ValueError(f"confusion must hold integer counts, got {cm.tolist()}")
    if cm[0].sum() == 0 or cm[1].sum() == 0:
        raise ValueError(f"confusion needs test samples of both true classes, got rows {cm.tolist()}")
    return cm.astype(np.int64)


def confusion_from_paper(cnf) -> np.ndarray:
    """Convert the study report's ``CNF`` to ``confusion[true, predicted]``.

    The report defines ``CNF = [[sum 1(C(Y)=1), sum 1(C(X)=1)], [sum 1(C(Y)=0), sum 1(C(X)=0)]]``
    where ``Y ~ P1`` (label 1) and ``X ~ P0`` (label 0): columns are the true class (1, then
    0), rows the prediction (1, then 0). So ``CNF = [[TP, FP], [FN, TN]]``.
    """
    c = np.asarray(cnf)
    if c.shape != (2, 2):
        raise ValueError(f"CNF must be 2 x 2, got shape {c.shape}")
    tp, fp, fn, tn = c[0, 0], c[0, 1], c[1, 0], c[1, 1]
    return np.array([[tn, fp], [fn, tp]], dtype=np.int64)


def class_errors(confusion) -> tuple[float, float, int, int]:
    """``(e0, e1, te0, te1)`` from ``confusion[true, predicted]``.

    ``e0`` is the error rate on true class 0 (the fraction of true-0 test samples predicted
    1) and ``e1`` the fraction of true-1 test samples predicted 0. The denominators are the
    TRUE class counts ``te0``, ``te1``, as in Kim et al.; the study's notebook used the
    predicted counts, which we do not.
    """
    cm = _check_confusion(confusion)
    te0, te1 = int(cm[0].sum()), int(cm[1].sum())
    return cm[0, 1] / te0, cm[1, 0] / te1, te0, te1


def kim_asymptotic_test(confusion) -> tuple[float, float]:
    """Kim et al.'s asymptotic test of H0: P0 = P1 from a held-out confusion matrix.

    ``T = (2E - 1) / sqrt(e0 (1 - e0) / te0 + e1 (1 - e1) / te1)`` with ``E = (e0 + e1) / 2``
    (:func:`class_errors`), and the one-sided p-value ``Phi(T)``: small when the balanced
    error is below 1/2. Rejecting when ``T < -z_alpha`` is asymptotically of level alpha
    (Kim et al., Section 4; the study report, eq. for ``H_a``).

    Degenerate variance (both error rates 0 or 1): ``T = -inf`` (p = 0) when ``E < 1/2``,
    ``+inf`` (p = 1) when ``E > 1/2``, and ``T = 0`` (p = 1/2) when ``E = 1/2`` (e.g. a
    classifier that predicts one class for everything carries no evidence).

    Parameters
    ----------
    confusion : array_like
        2 x 2 counts, ``confusion[true, predicted]``.

    Returns
    -------
    tuple of float
        ``(T, p)``.
    """
    e0, e1, te0, te1 = class_errors(confusion)
    num = 2.0 * (0.5 * (e0 + e1)) - 1.0
    var = e0 * (1.0 - e0) / te0 + e1 * (1.0 - e1) / te1
    if var <= 0.0:
        if abs(num) < 1e-15:
            return 0.0, 0.5
        return (-math.inf, 0.0) if num < 0 else (math.inf, 1.0)
    T = num / math.sqrt(var)
    return float(T), float(stats.norm.cdf(T))


def permutation_pvalue(observed: float, null, *, alternative: str = "greater") -> float:
    """Finite-sample valid permutation p-value ``(1 + #{null >= observed}) / (P + 1)``.

    ``alternative="less"`` counts ``null <= observed`` instead. The +1 counts the observed
    value as one draw from the null, so the p-value is never 0 and the test is exact
    (Phipson & Smyth, 2010).
    """
    null = np.asarray(null, dtype=np.float64).reshape(-1)
    # A NaN statistic compares false with everything, which would read as p = 1/(P+1).
    if null.size == 0 or math.isnan(check_statistic("observed", observed)):
        return math.nan
    if np.isnan(null).any():
        raise ValueError(f"null must hold no NaN, got {int(np.isnan(null).sum())} NaN of {null.size}")
    if alternative == "greater":
        count = int(np.count_nonzero(null >= observed))
    elif alternative == "less":
        count = int(np.count_nonzero(null <= observed))
    else:
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    return (1.0 + count) / (null.size + 1.0)


#: Calibration constant of :func:`kim_min_test_per_class` (see there).
_KIM_EDGEWORTH_KAPPA = 1.25


def kim_min_test_per_class(alpha: float) -> int:
    """Held-out samples per class below which Kim's asymptotic test is unreliable at ``alpha``.

    Kim's ``T`` is studentised by plug-in error rates, so at small held-out counts its
    lower tail is heavier than the normal's and the test rejects too often. As for any
    studentised mean, the first-order (Edgeworth) error of the tail is of order
    ``phi(z_alpha) / sqrt(te)``; its constant, fitted to simulated nulls (held-out
    predictions independent of the class, the classifier's bias uniform in
    [0.3, 0.7]; ``tests/test_stats_validity.py``), is ``kappa = 1.25``:
    ``size(te) ~= alpha + kappa * phi(z_alpha) / sqrt(te)``. We call the test reliable
    when the excess is at most ``alpha / 2`` (size <= 1.5 alpha), i.e.

    ``te >= (2 * kappa * phi(z_alpha) / alpha) ** 2``

    which is 45 per class at alpha = 0.01, 27 at 0.05 and 71 at 0.001. (Measured sizes
    at alpha = 0.01: 0.020 with 10 + 10 held out, 0.015-0.017 with 25 + 25, 0.012 with
    45 + 45.) Below it, decide by a permutation test.

    Parameters
    ----------
    alpha : float
        Level of the test, in (0, 1).

    Returns
    -------
    int
        The smallest reliable held-out count per class.
    """
    z = stats.norm.isf(check_fraction("alpha", alpha))
    return int(math.ceil((2.0 * _KIM_EDGEWORTH_KAPPA * stats.norm.pdf(z) / alpha) ** 2))


def kim_order_statistic_rule(observed: float, null, alpha: float) -> tuple[bool, int, float]:
    """The permutation decision of Kim et al. (and of the study): reject if
    ``alpha_* > alpha^(k)`` with ``k = ceil((1 - alpha)(1 + P))``.

    ``alpha^(k)`` is the k-th smallest of the ``P + 1`` accuracies ``alpha_*, alpha_1, ...,
    alpha_P`` (the observed one included). Ties with the threshold do not reject, which
    keeps the test at level alpha when accuracies are discrete.

    Returns
    -------
    tuple of (bool, int, float)
        ``(reject, k, alpha^(k))``. With too few permutations (``k > P + 1`` cannot happen,
        but ``k = P + 1`` means the observed accuracy would have to exceed itself) the test
        never rejects; choose ``P >= (1 - alpha) / alpha``.
    """
    null = np.asarray(null, dtype=np.float64).reshape(-1)
    P = null.size
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    # The small slack keeps e.g. (1 - 0.05) * 20 = 19.000000000000004 at 19.
    k = max(1, math.ceil((1.0 - alpha) * (1 + P) - 1e-9))
    allv = np.sort(np.concatenate([[observed], null]))
    thr = float(allv[k - 1])
    return bool(observed > thr), int(k), thr
