"""Kernel two-sample test: Gretton et al.'s MMD with a Gaussian kernel, permutation p-value.

The kernel matrix ``K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2))`` is built once (torch, on
CPU or GPU), with ``sigma`` the median pairwise distance (the median heuristic). A
permutation of the labels only changes which entries are summed, so the null is
computed in batches of permutations as one GEMM ``K @ U`` with ``U`` the ``(n, b)``
indicator matrix of the permuted type-1 samples::

    u^T K u = sum_{i, j in 1} K_ij,  u^T K 1 = sum_{i in 1, j} K_ij,  1^T K 1

give every within- and between-group sum, hence MMD^2, for all columns at once.

Unbiased estimator (Gretton et al., 2012, Lemma 6)::

    MMD_u^2 = sum_{i != j in 1} K / (n1 (n1 - 1)) + sum_{i != j in 0} K / (n0 (n0 - 1))
              - 2 sum_{i in 1, j in 0} K / (n1 n0)

and the biased (V-statistic) one with the diagonals included and ``n^2`` denominators.

Reference:
    Gretton, A., Borgwardt, K. M., Rasch, M. J., Schoelkopf, B. & Smola, A. (2012). A kernel
    two-sample test. JMLR 13, 723-773.
"""

from __future__ import annotations

import numpy as np
import torch

from fovea_ray.stats import _seeding
from fovea_ray.stats._validate import check_features, check_labels
from fovea_ray.stats.kim import permutation_pvalue
from fovea_ray.stats.outcome import TestOutcome

__all__ = ["gaussian_kernel", "median_bandwidth", "mmd_test"]


def median_bandwidth(X: torch.Tensor, *, max_points: int = 2000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance (on a seeded subsample of at most ``max_points``)."""
    n = X.shape[0]
    if n > max_points:
        idx = _seeding.stream(seed, _seeding.MMD_PERMUTATION, 1).choice(n, size=max_points, replace=False)
        X = X[torch.as_tensor(np.sort(idx), device=X.device)]
    d = torch.cdist(X, X)
    iu = torch.triu_indices(d.shape[0], d.shape[0], offset=1, device=X.device)
    med = float(torch.quantile(d[iu[0], iu[1]], 0.5))  # interpolated, as numpy.median
    return med if med > 0 else 1.0


def gaussian_kernel(X: torch.Tensor, sigma: float) -> torch.Tensor:
    """``exp(-||x_i - x_j||^2 / (2 sigma^2))`` for all pairs of rows of ``X``."""
    sq = (X * X).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)).clamp_(min=0.0)
    d2.fill_diagonal_(0.0)
    return torch.exp(-d2 / (2.0 * sigma * sigma))


def _mmd2_batch(
    K: torch.Tensor, U: torch.Tensor, k1: torch.Tensor, total: torch.Tensor, unbiased: bool
) -> torch.Tensor:
    """MMD^2 for each column of the 0/1 indicator matrix ``U`` (n, b) of type-1 samples."""
    n = K.shape[0]
    n1 = U.sum(0)
    n0 = n - n1
    KU = K @ U
    s11 = (U * KU).sum(0)  # sum over i, j in group 1
    s1a = (U * k1[:, None]).sum(0)  # sum over i in 1, all j
    s10 = s1a - s11
    s00 = total - 2.0 * s1a + s11
    if unbiased:
        d1 = (U * torch.diagonal(K)[:, None]).sum(0)
        d0 = torch.diagonal(K).sum() - d1
        return (s11 - d1) / (n1 * (n1 - 1)) + (s00 - d0) / (n0 * (n0 - 1)) - 2.0 * s10 / (n1 * n0)
    return s11 / n1**2 + s00 / n0**2 - 2.0 * s10 / (n1 * n0)


def mmd_test(
    X,
    y,
    *,
    n_permutations: int = 500,
    seed: int = 0,
    bandwidth: float | None = None,
    unbiased: bool = True,
    standardize: bool = True,
    alpha: float = 0.01,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
    batch_size: int = 100,
) -> TestOutcome:
    """MMD two-sample test with a Gaussian kernel and a permutation p-value.

    Parameters
    ----------
    X : array_like
        ``(n, d)``.
    y : array_like
        ``(n,)`` labels in {0, 1}.
    n_permutations : int, optional
        P for ``(1 + #{null >= observed}) / (P + 1)``.
    seed : int, optional
        seeds the permutations (and the bandwidth subsample).
    bandwidth : float or None, optional
        kernel width ``sigma``; None: the median heuristic.
    unbiased : bool, optional
        the U-statistic ``MMD_u^2`` (default) or the biased V-statistic.
    standardize : bool, optional
        z-score columns first (label-free): otherwise the widest-ranging
        features alone set the distances.
    device, dtype : str and torch.dtype, optional
        where and in what precision the kernel lives (n^2 entries).
    batch_size : int, optional
        permutations per GEMM.

    Returns
    -------
    TestOutcome
        :class:`TestOutcome` with ``statistic = MMD^2`` and ``details`` ``bandwidth``,
        ``n_permutations``, ``null_mean``, ``null_sd``.
    """
    Xa = check_features(X)  # NaN/inf would make every permutation tie and p = 1/(P+1) reject
    yy = check_labels(y, Xa.shape[0]).astype(np.int64)
    n1, n0 = int((yy == 1).sum()), int((yy == 0).sum())
    if min(n1, n0) < 2:
        return TestOutcome.skip("mmd", f"MMD needs >= 2 samples per type, got {n1} and {n0}", alpha)
    if standardize:
        sd = Xa.std(0)
        sd[sd == 0] = 1.0
        Xa = (Xa - Xa.mean(0)) / sd
    Xt = torch.as_tensor(Xa, dtype=dtype, device=device)
    sigma = float(bandwidth) if bandwidth else median_bandwidth(Xt, seed=seed)
    K = gaussian_kernel(Xt, sigma)
    k1 = K.sum(1)
    total = k1.sum()
    u_obs = torch.as_tensor(yy == 1, dtype=dtype, device=device)[:, None]
    observed = float(_mmd2_batch(K, u_obs, k1, total, unbiased)[0])
    P = int(n_permutations)
    rng = _seeding.stream(seed, _seeding.MMD_PERMUTATION, 0)
    null = np.empty(P)
    for a in range(0, P, batch_size):
        b = min(P, a + batch_size)
        perms = rng.permuted(np.broadcast_to(yy, (b - a, yy.size)), axis=1)
        U = torch.as_tensor(perms.T == 1, dtype=dtype, device=device)
        null[a:b] = _mmd2_batch(K, U, k1, total, unbiased).cpu().numpy()
    p = permutation_pvalue(observed, null) if P > 0 else float("nan")
    return TestOutcome(
        "mmd",
        observed,
        p,
        alpha,
        alternative="greater",
        details={
            "bandwidth": sigma,
            "n_permutations": P,
            "unbiased": bool(unbiased),
            "null_mean": float(null.mean()) if P else float("nan"),
            "null_sd": float(null.std(ddof=1)) if P > 1 else float("nan"),
            "kernel": "gaussian",
            "standardized": bool(standardize),
        },
    )
