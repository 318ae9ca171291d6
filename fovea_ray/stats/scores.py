"""Tests on the classifier's out-of-sample scores (the study's "future work").

* Friedman (2003): reduce each held-out sample to its classifier score and compare the
  two groups' scores with a univariate two-sample test: Mann-Whitney U and
  Kolmogorov-Smirnov. The classifier was fitted on other data, so under H0 the held-out
  scores of both groups are i.i.d. and both tests are exact. The alternative is one-sided:
  type-1 scores stochastically larger, the direction the classifier was trained for.
* D'Agostino-Pearson omnibus normality of the scores (``scipy.stats.normaltest``):
  ``K^2 = s^2 + k^2`` with ``s``, ``k`` the z-scores of the skewness and kurtosis tests (the
  study reported K^2 = 408.3, p = 2.1e-89 for its pooled held-out scores).
* Cai, Goggin & Jiang (2020): the likelihood ratio ``q(x)/p(x)`` of the two groups equals
  the classifier's posterior odds ``P(1|x)/P(0|x)`` times the constant ``n0/n1`` (the
  inverse prior odds of its training sample), so a probabilistic classifier estimates the
  log-likelihood ratio as ``l(x) = logit P(1|x) - log(n1_train/n0_train)``. What is
  implemented here (the paper's full text was not available to us; this follows its
  abstract and the study's description, "the odds ratio of the classification
  probability times a constant"): the statistic is the held-out mean log-likelihood-ratio
  contrast ``Lambda = mean_{y=1} l(x) - mean_{y=0} l(x)``, whose population value is the
  symmetrised Kullback-Leibler (Jeffreys) divergence ``KL(P1||P0) + KL(P0||P1)`` (zero iff
  P0 = P1). No cross-validation is needed: ``l`` is fitted once on the training half. The
  p-value permutes the held-out labels with ``l`` fixed (exact under H0, the same scheme as
  the half-permutation test), and a Welch z approximation is reported beside it.

References
----------
.. [1] Friedman, J. (2003). On multivariate goodness-of-fit and two-sample testing. SLAC-PUB-10325.
.. [2] D'Agostino, R. B. (1971). An omnibus test of normality for moderate and large sample
   size. Biometrika 58, 341-348; D'Agostino, R. & Pearson, E. S. (1973). Tests for
   departure from normality. Biometrika 60, 613-622.
.. [3] Cai, H., Goggin, B. & Jiang, Q. (2020). Two-sample test based on classification
   probability. Statistical Analysis and Data Mining 13(1), 5-13 (arXiv:1909.07836).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from fovea_ray.stats import _seeding
from fovea_ray.stats.kim import permutation_pvalue
from fovea_ray.stats.outcome import TestOutcome

__all__ = ["friedman_score_tests", "odds_ratio_test", "score_normality"]


def _split_scores(scores, y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    yy = np.asarray(y).reshape(-1)
    if s.shape != yy.shape:
        raise ValueError(f"scores ({s.size}) and labels ({yy.size}) differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return s, yy, s[yy == 1], s[yy == 0]


def friedman_score_tests(scores, y, *, alpha: float = 0.01, min_per_class: int = 2) -> dict[str, TestOutcome]:
    """Mann-Whitney U and Kolmogorov-Smirnov on held-out scores (Friedman, 2003).

    Both test the alternative that type-1 scores are stochastically larger. ``details``
    of the U test hold ``auc = U / (n1 n0)``, the probability that a type-1 score exceeds a
    type-0 score.
    """
    _, _, s1, s0 = _split_scores(scores, y)
    if min(s1.size, s0.size) < min_per_class:
        reason = f"only {s1.size} and {s0.size} held-out scores of type 1 and 0"
        return {
            "mann_whitney": TestOutcome.skip("friedman_mann_whitney", reason, alpha),
            "kolmogorov_smirnov": TestOutcome.skip("friedman_kolmogorov_smirnov", reason, alpha),
        }
    mw = stats.mannwhitneyu(s1, s0, alternative="greater")
    # scipy's ks_2samp(x, y, "less"): the alternative is F_x < F_y, i.e. x stochastically larger.
    ks = stats.ks_2samp(s1, s0, alternative="less")
    return {
        "mann_whitney": TestOutcome(
            "friedman_mann_whitney",
            float(mw.statistic),
            float(mw.pvalue),
            alpha,
            alternative="greater",
            details={"auc": float(mw.statistic) / (s1.size * s0.size), "n1": int(s1.size), "n0": int(s0.size)},
        ),
        "kolmogorov_smirnov": TestOutcome(
            "friedman_kolmogorov_smirnov",
            float(ks.statistic),
            float(ks.pvalue),
            alpha,
            alternative="greater",
            details={"n1": int(s1.size), "n0": int(s0.size)},
        ),
    }


def score_normality(scores, *, alpha: float = 0.01) -> TestOutcome:
    """D'Agostino-Pearson omnibus test of the pooled scores (``scipy.stats.normaltest``).

    ``statistic`` is ``s^2 + k^2``; ``details`` hold ``s`` (skewness z), ``k`` (kurtosis z),
    and the fitted normal's ``mean``/``sd`` (for the score-distribution figure).
    Needs at least 20 scores (the kurtosis test's limit).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size < 20:
        return TestOutcome.skip("dagostino_pearson_normality", f"only {s.size} scores (the test needs >= 20)", alpha)
    if not np.isfinite(s).all() or np.ptp(s) == 0:
        return TestOutcome.skip("dagostino_pearson_normality", "the scores are constant or not finite", alpha)
    res = stats.normaltest(s)
    sk = stats.skewtest(s).statistic
    ku = stats.kurtosistest(s).statistic
    return TestOutcome(
        "dagostino_pearson_normality",
        float(res.statistic),
        float(res.pvalue),
        alpha,
        alternative="two-sided",
        details={"s": float(sk), "k": float(ku), "mean": float(s.mean()), "sd": float(s.std(ddof=1)), "n": int(s.size)},
    )


def odds_ratio_test(
    log_odds,
    y,
    *,
    n_train: tuple[int, int],
    n_permutations: int = 1000,
    seed: int = 0,
    alpha: float = 0.01,
    min_per_class: int = 2,
) -> TestOutcome:
    """Cai, Goggin & Jiang's classification-probability test (see the module docstring).

    Parameters
    ----------
    log_odds : array_like
        held-out ``logit P(1|x)`` of a classifier fitted on the training part
        (a logistic regression's ``decision_function``).
    y : array_like
        held-out labels.
    n_train : tuple of int
        ``(n0, n1)`` training counts (for the prior-odds constant).
    n_permutations : int, optional
        permutations of the held-out labels for the p-value.

    Returns
    -------
    TestOutcome
        A :class:`TestOutcome`: ``statistic = Lambda``; ``details``: the Welch ``z`` and its
        p-value, ``P``, the two groups' mean log-likelihood ratios.
    """
    s, yy, s1, s0 = _split_scores(log_odds, y)
    if min(s1.size, s0.size) < min_per_class:
        return TestOutcome.skip(
            "cai_odds_ratio", f"only {s1.size} and {s0.size} held-out samples of type 1 and 0", alpha
        )
    n0, n1 = int(n_train[0]), int(n_train[1])
    if n0 < 1 or n1 < 1:
        raise ValueError(f"n_train must hold two positive counts, got {n_train}")
    llr = s - math.log(n1 / n0)
    l1, l0 = llr[yy == 1], llr[yy == 0]
    lam = float(l1.mean() - l0.mean())
    P = int(n_permutations)
    null = np.zeros(0)
    if P > 0:
        rng = _seeding.stream(seed, _seeding.SCORE_PERMUTATION)
        perms = rng.permuted(np.broadcast_to(yy, (P, yy.size)), axis=1)
        m1 = perms == 1
        null = (llr[None] * m1).sum(1) / m1.sum(1) - (llr[None] * ~m1).sum(1) / (~m1).sum(1)
        p = permutation_pvalue(lam, null)
    else:
        p = math.nan
    se = math.sqrt(l1.var(ddof=1) / l1.size + l0.var(ddof=1) / l0.size) if min(l1.size, l0.size) > 1 else math.nan
    z = lam / se if se and se > 0 else math.nan
    p_z = float(stats.norm.sf(z)) if math.isfinite(z) else math.nan
    return TestOutcome(
        "cai_odds_ratio",
        lam,
        float(p) if P > 0 else p_z,
        alpha,
        alternative="greater",
        details={
            "n_permutations": P,
            "pvalue_method": "permutation" if P > 0 else "welch-z",
            "welch_z": z,
            "welch_pvalue": p_z,
            "mean_llr_type1": float(l1.mean()),
            "mean_llr_type0": float(l0.mean()),
            "prior_log_odds": math.log(n1 / n0),
        },
    )
