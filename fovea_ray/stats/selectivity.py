"""Per-channel selectivity: which channels respond differently to sharp and blurred objects.

For every channel and statistic (mean, max, ...): a two-sided Mann-Whitney U test of
type 1 against type 0, the effect size ``AUC = U1 / (n1 n0)`` (the probability that a
type-1 value exceeds a type-0 value, ties counted 1/2; > 0.5: the channel prefers type
1, the sharp objects; < 0.5: it prefers type 0, the blurred ones), and Benjamini-Hochberg
q-values across the channels of each statistic. The study asked whether any kernel
prefers low resolution: ``n_prefer_type0`` answers it.

References
----------
.. [1] Mann, H. B. & Whitney, D. R. (1947). On a test of whether one of two random variables
   is stochastically larger than the other. Ann. Math. Statist. 18, 50-60.
.. [2] Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B 57,
   289-300.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from fovea_ray.stats._validate import check_labels

__all__ = ["ChannelSelectivity", "benjamini_hochberg", "channel_selectivity"]


def benjamini_hochberg(pvalues, axis: int = -1) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) along ``axis``.

    ``q_(i) = min_{j >= i} min(1, m p_(j) / j)`` over the sorted p-values; the same as
    ``scipy.stats.false_discovery_control(p, method="bh")``. NaN p-values (e.g. constant
    channels) are left out of the family and stay NaN.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0:  # as scipy.stats.false_discovery_control
        return p.copy()
    p = np.moveaxis(p, axis, -1)
    out = np.full(p.shape, np.nan)
    flat_p = p.reshape(-1, p.shape[-1])
    flat_o = out.reshape(-1, p.shape[-1])
    for r in range(flat_p.shape[0]):
        row = flat_p[r]
        ok = np.flatnonzero(np.isfinite(row))
        m = ok.size
        if m == 0:
            continue
        if np.any((row[ok] < 0) | (row[ok] > 1)):
            raise ValueError("p-values must lie in [0, 1]")
        order = ok[np.argsort(row[ok], kind="stable")]
        ranked = row[order] * m / np.arange(1, m + 1)
        q = np.minimum.accumulate(ranked[::-1])[::-1]
        flat_o[r, order] = np.minimum(q, 1.0)
    return np.moveaxis(flat_o.reshape(p.shape), -1, axis)


@dataclass(frozen=True, eq=False)
class ChannelSelectivity:
    """Result of :func:`channel_selectivity`; arrays are ``(C, S)`` (channel, statistic).

    Attributes
    ----------
    stat_names : tuple of str
        the S statistic names.
    u : ndarray
        Mann-Whitney U of type 1 against type 0.
    auc : ndarray
        ``u / (n1 n0)``.
    p : ndarray
        two-sided p-values.
    q : ndarray
        BH q-values within each statistic's column.
    fdr : float
        the FDR level of the counts.
    counts : dict
        per statistic: ``n_channels``, ``n_selective`` (q <= fdr),
        ``n_prefer_type1`` (selective, AUC > 0.5), ``n_prefer_type0`` (selective, AUC < 0.5).
    n1, n0 : int
        group sizes.
    """

    stat_names: tuple[str, ...]
    u: np.ndarray
    auc: np.ndarray
    p: np.ndarray
    q: np.ndarray
    fdr: float
    counts: dict
    n1: int
    n0: int

    @property
    def n_selective(self) -> int:
        """Selective (channel, statistic) pairs over all statistics."""
        return int(sum(c["n_selective"] for c in self.counts.values()))


def channel_selectivity(values, y, *, stat_names=None, fdr: float = 0.05) -> ChannelSelectivity:
    """Per-channel two-sided Mann-Whitney U, AUC and BH FDR (see the module docstring).

    Parameters
    ----------
    values : array_like
        ``(N, C, S)`` (or ``(N, C)``) per-sample channel statistics.
    y : array_like
        ``(N,)`` labels in {0, 1}.
    stat_names : sequence of str, optional
        names of the S statistics (default ``stat0, stat1, ...``).
    fdr : float, optional
        FDR level for the counts.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 2:
        v = v[:, :, None]
    if v.ndim != 3:
        raise ValueError(f"values must be (N, C, S) or (N, C), got shape {v.shape}")
    yy = check_labels(y, v.shape[0])  # a label other than 0/1 is an error, never dropped
    if not np.all(np.isfinite(v)):
        raise ValueError("values contain NaN or infinite entries")
    if not 0 < fdr < 1:
        raise ValueError(f"fdr must lie in (0, 1), got {fdr}")
    N, C, S = v.shape
    names = tuple(stat_names) if stat_names is not None else tuple(f"stat{i}" for i in range(S))
    if len(names) != S:
        raise ValueError(f"{len(names)} stat names for {S} statistics")
    x1, x0 = v[yy == 1], v[yy == 0]
    n1, n0 = x1.shape[0], x0.shape[0]
    if n1 == 0 or n0 == 0:
        raise ValueError(f"both types are needed, got {n1} of type 1 and {n0} of type 0")
    flat1, flat0 = x1.reshape(n1, C * S), x0.reshape(n0, C * S)
    res = stats.mannwhitneyu(flat1, flat0, alternative="two-sided", axis=0, method="asymptotic")
    u = np.asarray(res.statistic, dtype=np.float64).reshape(C, S)
    p = np.asarray(res.pvalue, dtype=np.float64).reshape(C, S)
    # A constant channel has no information (scipy returns p = 1 with a warning-free tie
    # correction of zero variance -> NaN); keep it out of the FDR family.
    const = np.ptp(v, axis=0) == 0
    p = np.where(const, np.nan, p)
    auc = u / (n1 * n0)
    q = benjamini_hochberg(p, axis=0)
    counts = {}
    for j, name in enumerate(names):
        sel = np.nan_to_num(q[:, j], nan=1.0) <= fdr
        counts[name] = {
            "n_channels": int(C),
            "n_selective": int(sel.sum()),
            "n_prefer_type1": int((sel & (auc[:, j] > 0.5)).sum()),
            "n_prefer_type0": int((sel & (auc[:, j] < 0.5)).sum()),
        }
    return ChannelSelectivity(
        stat_names=names, u=u, auc=auc, p=p, q=q, fdr=float(fdr), counts=counts, n1=int(n1), n0=int(n0)
    )
