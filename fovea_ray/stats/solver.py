"""Batched L2-regularised logistic regression: many label vectors, one design matrix.

A permutation test refits the same model to hundreds of label vectors over the same
features ``X``. Fitting them one by one (scikit-learn) reads ``X`` twice per L-BFGS
iteration per fit, which is memory-bound. Here all label vectors are fitted together:
every iteration is two GEMMs over a ``(d, B)`` coefficient matrix, which runs near the
machine's peak on CPU and GPU alike.

The objective is scikit-learn's ``LogisticRegression(penalty="l2", C=C,
fit_intercept=True)`` objective, exactly::

    f(w, b) = 0.5 * ||w||^2 + C * sum_i mask_i * log(1 + exp(-s_i (x_i . w + b)))

with ``s_i = 2 y_i - 1`` and the intercept ``b`` unpenalised; ``mask`` selects each
column's training rows (all rows when omitted).

The algorithm (why it is fast):

* **Change of variables.** ``X`` is centred (``x . w + b = (x - mu) . w + b'``, exact) and
  rotated into the eigenbasis ``V`` of ``Xc^T Xc`` (``w = V u``, ``||w|| = ||u||``, exact),
  once per design. Activation statistics are far from isotropic (channel scales spread
  over orders of magnitude, a shared "contrast" factor), which is what makes plain
  L-BFGS on raw features crawl; in the eigenbasis the data term of the Hessian,
  ``Xc^T D Xc``, is close to diagonal.
* **L-BFGS with an adaptive diagonal initial Hessian** ``H0 = diag(1/C + c_b * lambda_j)``
  per column ``b``: ``c_b`` (the mean curvature ``sigma(1 - sigma)`` of that column's
  fit) is re-estimated from every accepted step, so the preconditioner follows the fit
  from ``c = 1/4`` at the start to the small curvature of a (near-)separable optimum.
* **Exact line search for free.** The margins are linear in the step, ``Z(t) = Z + t X p``,
  so after one GEMM for ``X p`` the one-dimensional minimisation along ``p`` is a few
  safeguarded Newton steps on elementwise arrays; no extra pass over ``X``.
* **Precision.** By default (``precision="mixed"``) the bulk of the iterations run with
  float32 GEMMs (twice the speed) and the last ones in float64 on the float64 design, so
  the optimum is the float64 optimum. In that float64 phase the margins along the search
  direction (which set the step length and update the margins) use a float32 copy of the
  design; the margins are recomputed from the float64 design every 25 iterations, and the
  returned objective and decision values always are. ``precision="float64"`` is float64
  throughout (the reference the default is checked against).

Several independent designs can be fitted at once by giving ``X`` a leading group axis
``(G, n, d)`` (batched GEMMs), e.g. many small simulated data sets.

References
----------
.. [1] Nocedal, J. (1980). Updating quasi-Newton matrices with limited storage.
   Mathematics of Computation 35, 773-782.
.. [2] Liu, D. C. & Nocedal, J. (1989). On the limited memory BFGS method for large scale
   optimization. Mathematical Programming 45, 503-528.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["BatchedLogisticFit", "LogisticDesign", "fit_logistic_batched", "prepare_design"]


#: Below this many multiply-adds per GEMM, threads cost more than they give (and on a
#: loaded machine an OpenMP team waiting for its threads is many times slower).
SMALL_GEMM = 1_000_000_000
#: Iterations without halving the gradient norm after which a column stops.
STALL = 60


@contextmanager
def _torch_threads(n: int | None):
    if n is None or n == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _as_device(device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


@dataclass(frozen=True, eq=False)
class LogisticDesign:
    """A design matrix prepared once for many fits (see :func:`prepare_design`).

    Attributes
    ----------
    F64 : Tensor
        ``(G, n, r + 1)`` float64: centred features in the eigenbasis, then a column
        of ones (the intercept coordinate).
    scale : Tensor
        ``(G, d + 1)`` float64 eigenvalues of ``Xc^T Xc`` (``n`` for the intercept):
        the per-coordinate curvature scale used by the preconditioner.
    V : Tensor
        ``(G, d, r)`` float64 eigenvectors: ``w = V u[:r]`` (``r = d``, or the rank of the
        centred rows when ``d > n``: see :func:`prepare_design`).
    mu : Tensor
        ``(G, d)`` float64 column means: ``b = u[d] - mu . w``.
    C : float
        inverse regularisation strength (scikit-learn's ``C``).

    Notes
    -----
    Everything lives on the CPU (so the design pickles into Ray's object store);
    :func:`fit_logistic_batched` moves what it needs to its ``device``.
    """

    F64: torch.Tensor
    scale: torch.Tensor
    V: torch.Tensor
    mu: torch.Tensor
    C: float

    @property
    def n_groups(self) -> int:
        return int(self.F64.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.F64.shape[1])

    @property
    def n_features(self) -> int:
        """``d``, the columns of the original ``X``."""
        return int(self.V.shape[1])

    @property
    def rank(self) -> int:
        """``r``, the coordinates the fits run in (``d``, or fewer when ``d > n``)."""
        return int(self.F64.shape[2]) - 1

    def features(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The design in ``dtype`` on ``device``."""
        return self.F64.to(device=device, dtype=dtype)


def prepare_design(X, *, C: float = 1.0, curvature_rows: int | None = None, basis_rows=None) -> LogisticDesign:
    """Centre ``X`` and rotate it into the eigenbasis of ``Xc^T Xc`` (once per design).

    Parameters
    ----------
    X : array_like or Tensor
        ``(n, d)`` or ``(G, n, d)`` array or tensor (any float dtype; computed in float64).
    C : float, optional
        scikit-learn's ``C`` (the loss weight; the penalty is ``0.5 ||w||^2``).
    curvature_rows : int or None, optional
        the number of rows a typical fit trains on, when fits use a row
        ``mask`` (the eigenvalues are rescaled by ``curvature_rows / n``); only the
        preconditioner's starting point depends on it.
    basis_rows : array_like or None, optional
        ``(n_train,)`` or ``(G, n_train)``: the training rows, when every fit of this
        design trains on them (one split per group):
        the centring and the eigenbasis then come from those rows alone. With ``d`` larger
        than their number, the optimum lies in the span of the centred training rows
        (the penalty keeps every orthogonal coordinate at 0), so this thin basis is
        exact and free of directions only the held-out rows span, which the
        preconditioner would misjudge. Held-out rows are still projected, so decision
        values are exact for every row.

    Returns
    -------
    LogisticDesign
        A :class:`LogisticDesign` (it pickles, so it can go into Ray's object store once).
    """
    if not C > 0 or not math.isfinite(C):
        raise ValueError(f"C must be positive and finite, got {C}")
    Xt = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    Xt = Xt.detach().to(device="cpu", dtype=torch.float64)
    if Xt.ndim == 2:
        Xt = Xt[None]
    if Xt.ndim != 3:
        raise ValueError(f"X must have shape (n, d) or (G, n, d), got {tuple(Xt.shape)}")
    G, n, d = Xt.shape
    if n < 2 or d < 1:
        raise ValueError(f"X needs at least 2 rows and 1 column, got shape {tuple(Xt.shape)}")
    if not torch.isfinite(Xt).all():
        raise ValueError("X contains NaN or infinite values")
    if basis_rows is not None:
        rows_t = torch.as_tensor(np.sort(np.asarray(basis_rows), axis=-1), dtype=torch.int64)
        if rows_t.ndim == 1:
            rows_t = rows_t[None].expand(G, -1)
        if rows_t.ndim != 2 or rows_t.shape[0] != G or rows_t.shape[1] < 2:
            raise ValueError(f"basis_rows must be (n_rows,) or (G, n_rows) with n_rows >= 2 and G = {G}")
        Xb = _gather_rows(Xt, rows_t)
    else:
        Xb = Xt
    nb = Xb.shape[1]
    mu = Xb.mean(dim=1)
    Xc = Xt - mu[:, None, :]
    Xbc = Xb - mu[:, None, :]
    if d > nb:
        # d >> n (activations of a wide layer, few samples): the centred rows span at most
        # n - 1 directions, and the optimum's w lies in their span (the penalty keeps every
        # orthogonal coordinate at 0, where the fit starts). So the thin basis of the row
        # space is exact, and every fit costs O(n^2) per column instead of O(n d).
        gram_rows = Xbc @ Xbc.transpose(1, 2)  # (G, nb, nb)
        lam, Urows = torch.linalg.eigh(gram_rows)
        lam = lam.clamp(min=0.0)
        # Centring costs one dimension; rounding can leave more eigenvalues at ~0.
        live = lam > lam[:, -1:] * (nb * torch.finfo(torch.float64).eps * 16)
        r = max(int(live.sum(1).max()), 1)
        lam, Urows, live = lam[:, -r:], Urows[:, :, -r:], live[:, -r:]
        lam = torch.where(live, lam, torch.zeros_like(lam))
        V = (Xbc.transpose(1, 2) @ Urows) / lam.clamp(min=torch.finfo(torch.float64).tiny).sqrt()[:, None, :]
        V = _reorthonormalise(torch.where(live[:, None, :], V, torch.zeros_like(V)))
    else:
        gram = Xbc.transpose(1, 2) @ Xbc
        lam, V = torch.linalg.eigh(gram)
        lam = lam.clamp(min=0.0)
    F = torch.cat([Xc @ V, torch.ones(G, n, 1, dtype=torch.float64)], dim=2)
    rows = float(curvature_rows) if curvature_rows else float(nb)
    scale = torch.cat([lam * (rows / nb), torch.full((G, 1), rows, dtype=torch.float64)], dim=1)
    return LogisticDesign(F64=F.contiguous(), scale=scale, V=V, mu=mu, C=float(C))


def _reorthonormalise(V: torch.Tensor) -> torch.Tensor:
    """One QR pass on ``(G, d, r)`` columns built from the rows' Gram matrix (rounding makes
    them orthonormal only to about ``sqrt(eps) * cond``), keeping the columns' order and signs."""
    Q, R = torch.linalg.qr(V)
    sign = torch.sign(torch.diagonal(R, dim1=1, dim2=2))
    sign[sign == 0] = 1.0
    return Q * sign[:, None, :]


@dataclass(frozen=True, eq=False)
class BatchedLogisticFit:
    """The result of :func:`fit_logistic_batched` (numpy, float64).

    Attributes
    ----------
    coef : ndarray
        ``(G, d, B)`` coefficients ``w`` in the original feature space.
    intercept : ndarray
        ``(G, B)`` intercepts ``b``.
    decision : ndarray
        ``(G, n, B)`` decision values ``x_i . w + b`` for every row (train and
        held-out), computed in float64 from the final coefficients.
    objective : ndarray
        ``(G, B)`` ``0.5 ||w||^2 + C * sum(mask * logloss)``.
    grad_norm : ndarray
        ``(G, B)`` final gradient norm of ``objective / C`` (rotated coordinates).
    converged : ndarray
        ``(G, B)`` whether ``grad_norm <= tol * initial grad_norm`` (or, with
        ``stable_signs``, the held-out predictions were certified stable).
    n_iter : int
        iterations run (float32 + float64 phases).
    """

    coef: np.ndarray
    intercept: np.ndarray
    decision: np.ndarray
    objective: np.ndarray
    grad_norm: np.ndarray
    converged: np.ndarray
    n_iter: int


def _as_labels(Y, G: int, n: int, name: str) -> torch.Tensor:
    Yt = torch.as_tensor(np.asarray(Y) if not isinstance(Y, torch.Tensor) else Y)
    if Yt.ndim == 1:
        Yt = Yt[:, None]
    if Yt.ndim == 2:
        Yt = Yt[None].expand(G, *Yt.shape)
    if Yt.ndim != 3 or Yt.shape[0] != G or Yt.shape[1] != n:
        raise ValueError(f"{name} must have shape (n, B) or (G, n, B) with n={n}, G={G}; got {tuple(Yt.shape)}")
    return Yt


PRECISIONS = ("mixed", "float32", "float64")


def fit_logistic_batched(
    design: LogisticDesign,
    Y,
    mask=None,
    *,
    train_rows=None,
    device: str | torch.device | None = None,
    precision: str = "mixed",
    tol: float = 1e-9,
    low_tol: float = 3e-6,
    max_iter: int = 3000,
    history: int = 10,
    line_search_steps: int = 3,
    threads: int | None = None,
    stable_signs: bool = False,
    sign_margin: float = 4.0,
    sign_tol: float = 1e-7,
) -> BatchedLogisticFit:
    """Fit ``B`` L2-logistic regressions, one per column of ``Y``, against one design.

    Parameters
    ----------
    design : LogisticDesign
        from :func:`prepare_design`.
    Y : array_like
        ``(n, B)`` (or ``(G, n, B)``, or ``(n,)``) labels in {0, 1}.
    mask : array_like, optional
        optional, same shape as ``Y``: 1 for the rows each column trains on.
    train_rows : array_like, optional
        optional, instead of ``mask`` when every column trains on the same
        rows: ``(n_train,)`` row indices (or ``(G, n_train)``, one set per group). The
        iterations then touch only those rows (half the work of a 50% mask); the other
        rows are held out and predicted.
    device : str, torch.device or None, optional
        where to fit (``"cpu"`` default, ``"cuda"``...).
    precision : str, optional
        ``"mixed"`` (default: float32 GEMMs until the gradient norm has fallen
        by ``low_tol``, then float64 to ``tol``), ``"float64"`` (float64 throughout),
        or ``"float32"`` (float32 only, to ``max(tol, low_tol)``: fastest, stops at
        float32's resolution).
    tol : float, optional
        stop a column when its gradient norm falls below ``tol`` times its gradient
        norm at zero.
    low_tol : float, optional
        the float32 phase's target (float32 cannot resolve much less).
    max_iter : int, optional
        iteration limit per phase. A column whose gradient stops shrinking
        (rounding floor) also stops; ``converged`` then says whether it met ``tol``.
    history : int, optional
        L-BFGS memory.
    line_search_steps : int, optional
        safeguarded Newton steps of the exact line search.
    threads : int or None, optional
        torch CPU threads for this call (None: one thread for small problems,
        else torch's setting).
    stable_signs : bool, optional
        for classification only (permutation tests): in the float64 phase,
        also stop a column once its gradient norm is below ``sign_tol`` (relative) and
        every held-out row (``mask == 0``) keeps its predicted class with a margin:
        ``|z_i| > sign_margin * |(X p)_i|``, where ``p`` is the next quasi-Newton step,
        the solver's own estimate of the remaining way to the optimum. Needs ``mask``
        or ``train_rows``.

    Returns
    -------
    BatchedLogisticFit
        :class:`BatchedLogisticFit`. A column's fit does not depend on the other columns
        of the batch, except through the summation order of the GEMMs.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    G, n, D = design.F64.shape
    dev = _as_device(device)
    B = int(np.shape(Y)[-1]) if np.ndim(Y) > 1 else 1
    if threads is None and dev.type == "cpu" and G * n * D * B < SMALL_GEMM:
        threads = 1
    if stable_signs and mask is None and train_rows is None:
        raise ValueError("stable_signs needs a mask or train_rows (held-out rows are the ones predicted)")
    if mask is not None and train_rows is not None:
        raise ValueError("give mask or train_rows, not both")
    sign_rule = (sign_margin, sign_tol) if stable_signs else None
    with _torch_threads(threads if dev.type == "cpu" else None):
        return _fit(
            design,
            Y,
            mask,
            train_rows,
            dev,
            precision,
            tol,
            low_tol,
            max_iter,
            history,
            line_search_steps,
            sign_rule,
            fast_direction=precision == "mixed",
        )


def _row_sets(train_rows, G: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, held_out)`` index tensors ``(G, n_train)``, ``(G, n - n_train)``."""
    tr = torch.as_tensor(np.asarray(train_rows), dtype=torch.int64)
    if tr.ndim == 1:
        tr = tr[None].expand(G, -1)
    if tr.ndim != 2 or tr.shape[0] != G or tr.shape[1] < 1:
        raise ValueError(f"train_rows must be (n_train,) or (G, n_train) with G={G}, got {tuple(tr.shape)}")
    if bool(((tr < 0) | (tr >= n)).any()):
        raise ValueError(f"train_rows must index rows 0..{n - 1}")
    keep = torch.ones(G, n, dtype=torch.bool)
    keep.scatter_(1, tr, False)
    if bool((keep.sum(1) != n - tr.shape[1]).any()):
        raise ValueError("train_rows must not repeat a row")
    held = (
        torch.stack([torch.nonzero(keep[g]).reshape(-1) for g in range(G)])
        if n > tr.shape[1]
        else torch.zeros(G, 0, dtype=torch.int64)
    )
    return tr, held


def _gather_rows(T: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``T[g, rows[g], :]`` for every group."""
    idx = rows.to(T.device)[:, :, None].expand(-1, -1, T.shape[2])
    return torch.gather(T, 1, idx)


def _fit(
    design,
    Y,
    mask,
    train_rows,
    dev,
    precision,
    tol,
    low_tol,
    max_iter,
    history,
    line_search_steps,
    sign_rule,
    fast_direction=False,
) -> BatchedLogisticFit:
    G, n, D = design.F64.shape
    Yt = _as_labels(Y, G, n, "Y").to(device=dev, dtype=torch.float64)
    if not bool(((Yt == 0) | (Yt == 1)).all()):
        raise ValueError("Y must hold only 0 and 1")
    B = Yt.shape[2]
    if mask is None:
        Mt = None
    else:
        Mt = _as_labels(mask, G, n, "mask").to(device=dev, dtype=torch.float64)
        if Mt.shape != Yt.shape:
            raise ValueError(f"mask shape {tuple(Mt.shape)} differs from Y's {tuple(Yt.shape)}")
        if bool((Mt.sum(1) == 0).any()):
            raise ValueError("every column of mask needs at least one training row")
    pen = torch.full((G, D, 1), 1.0 / design.C, dtype=torch.float64, device=dev)
    pen[:, -1] = 0.0
    scale = design.scale.to(dev)[:, :, None]

    if precision == "float64":
        phases = [(torch.float64, tol, sign_rule)]
    elif precision == "float32":
        phases = [(torch.float32, max(tol, low_tol), None)]
    else:
        phases = [(torch.float32, max(tol, low_tol), None), (torch.float64, tol, sign_rule)]
    U = torch.zeros(G, D, B, dtype=torch.float64, device=dev)
    n_iter = 0
    g0norm = None
    gnorm = None
    certified = torch.zeros(G, B, dtype=torch.bool, device=dev)
    rows = None if train_rows is None else _row_sets(train_rows, G, n)
    for ph_dtype, ph_tol, ph_sign in phases:
        F = design.features(ph_dtype, dev)
        Yp, Mp, Fheld = Yt.to(ph_dtype), None if Mt is None else Mt.to(ph_dtype), None
        if rows is not None:
            Fheld = _gather_rows(F, rows[1]) if ph_sign is not None else None
            F = _gather_rows(F, rows[0])
            Yp = _gather_rows(Yp, rows[0])
        Fdir = F.to(torch.float32) if (ph_dtype == torch.float64 and fast_direction) else None
        U, it, g0norm, gnorm, cert = _lbfgs(
            F,
            Yp,
            Mp,
            pen.to(ph_dtype),
            scale.to(ph_dtype),
            U.to(ph_dtype),
            ph_tol,
            max_iter,
            history,
            line_search_steps,
            g0norm,
            ph_sign,
            Fheld,
            Fdir,
        )
        del F, Fheld, Fdir
        certified |= cert
        n_iter += it
    U = U.to(torch.float64)
    F = design.features(torch.float64, dev)
    Z = F @ U
    S = 2.0 * Yt - 1.0
    loss = torch.nn.functional.softplus(-S * Z)
    if Mt is not None:
        loss = loss * Mt
    elif rows is not None:
        train_w = torch.zeros(G, n, 1, dtype=torch.float64, device=dev)
        train_w.scatter_(1, rows[0].to(dev)[:, :, None], 1.0)
        loss = loss * train_w
    w_rot = U[:, :-1, :]
    objective = 0.5 * (w_rot * w_rot).sum(1) + design.C * loss.sum(1)
    V = design.V.to(dev)
    coef = V @ w_rot  # (G, d, B)
    intercept = U[:, -1, :] - (design.mu.to(dev)[:, :, None] * coef).sum(1)
    converged = (gnorm <= phases[-1][1] * g0norm) | certified
    return BatchedLogisticFit(
        coef=coef.cpu().numpy(),
        intercept=intercept.cpu().numpy(),
        decision=Z.cpu().numpy(),
        objective=objective.cpu().numpy(),
        grad_norm=gnorm.cpu().to(torch.float64).numpy(),
        converged=converged.cpu().numpy(),
        n_iter=n_iter,
    )


#: With shared training rows, held-out rows are checked for stable signs every this many iterations.
CERT_EVERY = 5


def _lbfgs(F, Y, M, pen, scale, U, tol, max_iter, m, ls_steps, g0norm, sign_rule=None, Fheld=None, Fdir=None):
    """Masked, preconditioned L-BFGS with an exact line search; all columns at once."""
    dt = F.dtype
    Ft = F.transpose(1, 2)
    G, n, D = F.shape
    B = Y.shape[2]

    def residual(Z):
        R = torch.sigmoid(Z) - Y
        return R if M is None else R * M

    Z = F @ U
    grad = pen * U + Ft @ residual(Z)
    gn = grad.norm(dim=1)  # (G, B)
    if g0norm is None:
        g0norm = gn.clamp(min=torch.finfo(dt).tiny)
    g0 = g0norm.to(dt)
    c = torch.full((G, 1, B), 0.25, dtype=dt, device=F.device)  # curvature estimate
    hist: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    done = gn <= tol * g0
    certified = torch.zeros_like(done)
    best = gn.clone()
    since = torch.zeros_like(gn, dtype=torch.int64)
    it = 0
    for it in range(1, max_iter + 1):
        if bool(done.all()):
            it -= 1
            break
        # Two-loop recursion with H0 = diag(1 / (pen + c * scale)).
        q = grad.clone()
        alphas = []
        for s, y, rho in reversed(hist):
            a = rho * (s * q).sum(1, keepdim=True)
            alphas.append(a)
            q -= a * y
        q /= pen + c * scale
        for (s, y, rho), a in zip(hist, reversed(alphas)):
            b = rho * (y * q).sum(1, keepdim=True)
            q += s * (a - b)
        P = -q
        P = P.masked_fill(done[:, None, :], 0.0)
        dphi0 = (grad * P).sum(1, keepdim=True)  # (G, 1, B)
        bad = dphi0 >= 0
        if bool(bad.any()):
            # A stale curvature pair spoiled the direction: fall back to the preconditioned
            # gradient for those columns and forget their history.
            Pg = -grad / (pen + c * scale)
            P = torch.where(bad & ~done[:, None, :], Pg, P).masked_fill(done[:, None, :], 0.0)
            dphi0 = (grad * P).sum(1, keepdim=True)
            keep = (~bad).to(dt)
            hist = [(s, y, rho * keep) for s, y, rho in hist]
        # Margins along P. Only the step length depends on them, so a float32 copy of the
        # design serves in the float64 phase too (the gradient below stays float64).
        A = F @ P if Fdir is None else (Fdir @ P.to(Fdir.dtype)).to(dt)
        if sign_rule is not None:
            margin, stol = sign_rule
            ready = (gn <= stol * g0) & ~done
            if Fheld is None:
                steady = ((Z.abs() > margin * A.abs()) | (M > 0)).all(dim=1)
            elif bool(ready.any()) and it % CERT_EVERY == 0:
                steady = ((Fheld @ U).abs() > margin * (Fheld @ P).abs()).all(dim=1)
            else:
                steady = torch.zeros_like(ready)
            newly = steady & ready
            certified |= newly
            done = done | newly
        # Exact line search on phi(t) = f(U + t P): safeguarded Newton on phi'(t).
        pp = (pen * P * P).sum(1, keepdim=True)
        up = (pen * U * P).sum(1, keepdim=True)
        t = torch.ones_like(dphi0)
        lo = torch.zeros_like(t)
        hi = torch.full_like(t, math.inf)
        for _ in range(ls_steps):
            sg = torch.sigmoid(Z + t * A)
            r = sg - Y
            w = sg * (1 - sg)
            if M is not None:
                r = r * M
                w = w * M
            d1 = up + t * pp + (r * A).sum(1, keepdim=True)
            d2 = pp + (w * A * A).sum(1, keepdim=True)
            lo = torch.where(d1 < 0, t, lo)
            hi = torch.where(d1 >= 0, t, hi)
            tn = t - d1 / d2.clamp(min=torch.finfo(dt).tiny)
            outside = (tn <= lo) | (tn >= hi) | ~torch.isfinite(tn)
            mid = torch.where(torch.isfinite(hi), 0.5 * (lo + hi), 2.0 * lo.clamp(min=1.0))
            t = torch.where(outside, mid, tn)
        t = t.masked_fill(done[:, None, :], 0.0)
        S = t * P
        U = U + S
        Z = Z + t * A
        new_grad = pen * U + Ft @ residual(Z)
        Yd = new_grad - grad
        sy = (S * Yd).sum(1, keepdim=True)
        ss_pen = (pen * S * S).sum(1, keepdim=True)
        ss_scale = (scale * S * S).sum(1, keepdim=True)
        c_new = (sy - ss_pen) / ss_scale.clamp(min=torch.finfo(dt).tiny)
        moved = (ss_scale > 0) & torch.isfinite(c_new)
        c = torch.where(moved, c_new.clamp(1e-8, 0.25), c)
        ok = (sy > 1e-10 * (S.norm(dim=1, keepdim=True) * Yd.norm(dim=1, keepdim=True))).to(dt)
        rho = ok / torch.where(ok > 0, sy, torch.ones_like(sy))
        hist.append((S, Yd, rho))
        if len(hist) > m:
            hist.pop(0)
        grad = new_grad
        gn = grad.norm(dim=1)
        # Stop columns that meet the tolerance, and columns whose gradient has not halved
        # in STALL iterations (the rounding floor of this precision).
        improved = gn < 0.5 * best
        best = torch.where(improved, gn, best)
        since = torch.where(improved, torch.zeros_like(since), since + 1)
        done = done | (gn <= tol * g0) | (since >= STALL)
        if it % 25 == 0:
            # Re-derive the margins from U now and then: Z += t A accumulates rounding.
            Z = F @ U
    return U, it, g0norm, gn.to(torch.float64), certified
