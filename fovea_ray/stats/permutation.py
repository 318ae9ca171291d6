"""Permutation nulls of the classifier two-sample test: half and full.

Every refit uses the procedure of the layer's own fit (:mod:`fovea_ray.stats.classifier`):
with the standardized classifier each group's features are standardised with that
group's training rows, exactly as the observed fit's were with the observed split's.

* **Half permutation** (Kim et al., 2016; the study's test): the classifier fitted on the
  training half stays fixed; the held-out labels are permuted ``P`` times and the
  accuracy recomputed. Cheap and valid, but blind to the variability of training.
* **Full permutation** (the study's "future work"): the labels of the whole sample are
  permuted, the sample is re-split (stratified by the permuted labels) and the
  classifier refitted and scored. The observed statistic comes from the very same
  procedure on the true labels and split.

The full test is organised in **groups** that share a split, because a batch of fits
over the same training rows is one GEMM per iteration (see
:mod:`fovea_ray.stats.solver`). The ``P + 1`` statistics form ``K`` groups of ``m``:

* group 0 is the observed split with the true labels and ``m - 1`` permutations of the
  labels *within* its training part and *within* its held-out part;
* group ``k >= 1`` permutes the labels of the whole sample (stream ``(2, k)``), re-splits
  it stratified by those labels, and adds ``m - 1`` within-split permutations (streams
  ``(2, k, j)``).

Why this is exact: under H0 the rows are exchangeable whatever the labels, so (a) the
``K`` groups are exchangeable with each other (each is the same procedure applied to a
uniformly relabelled sample, group 0 to the sample as observed), and (b) within a group
all ``m`` labellings are exchangeable given the split (permuting labels inside the
training rows and inside the held-out rows keeps the stratified counts). Equal group
sizes make every statistic's rank distribution the same, so
``(1 + #{null >= observed}) / (P + 1)`` is a valid p-value. ``P`` is therefore rounded up
to ``K * m - 1`` (``K = ceil((P + 1) / group_size)``); the result reports the ``P`` used.

Full permutations run one group per executor item (in this process by default, Ray
tasks with :class:`fovea_ray.cluster.RayExecutor`). Every label vector and split is
drawn from ``SeedSequence(seed, spawn_key=...)`` keyed by group and index, and the groups
depend only on ``P`` and ``group_size``, so the null accuracies are bit-identical for
any number of workers and under task retries. ``X`` goes into the object store once (as
the prepared design of the batched solver). With the default logistic classifier each
group is one call of :func:`fovea_ray.stats.solver.fit_logistic_batched`; other
classifiers are cloned and refitted one labelling at a time.

References
----------
.. [1] Kim, I., Ramdas, A., Singh, A. & Wasserman, L. (2021). Classification accuracy as a
   proxy for two-sample testing. Annals of Statistics 49(1), 411-434.
.. [2] Ojala, M. & Garriga, G. C. (2010). Permutation tests for studying classifier
   performance. JMLR 11, 1833-1863.
.. [3] Hemerik, J. & Goeman, J. (2018). Exact testing with random permutations. TEST 27, 811-825.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from fovea_ray.stats import _seeding
from fovea_ray.stats._validate import check_features, check_labels, check_precision
from fovea_ray.stats.executor import Executor, executor_name, in_process
from fovea_ray.stats.outcome import TestOutcome

__all__ = [
    "FullPermutationNull",
    "full_permutation_many",
    "full_permutation_null",
    "group_labels",
    "group_layout",
    "half_permutation_null",
]

#: Default labellings per group (one Ray task, one batched solve).
GROUP_SIZE = 128


def half_permutation_null(y_test, y_pred, n_permutations: int, seed: int) -> np.ndarray:
    """Accuracies of the fixed predictions ``y_pred`` against ``P`` permutations of ``y_test``."""
    y_test = np.asarray(y_test)
    y_pred = np.asarray(y_pred)
    if y_test.shape != y_pred.shape:
        raise ValueError(f"y_test {y_test.shape} and y_pred {y_pred.shape} differ in shape")
    P = int(n_permutations)
    if P <= 0:
        return np.zeros(0)
    rng = _seeding.stream(seed, _seeding.HALF_PERMUTATION)
    perms = rng.permuted(np.broadcast_to(y_test, (P, y_test.size)), axis=1)
    return (perms == y_pred[None, :]).mean(axis=1)


def group_layout(n_permutations: int, group_size: int = GROUP_SIZE) -> tuple[int, int, int]:
    """``(K groups, m per group, P used = K * m - 1 >= n_permutations)``."""
    P = int(n_permutations)
    if P < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    if int(group_size) < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    K = math.ceil((P + 1) / int(group_size))
    m = math.ceil((P + 1) / K)
    return K, m, K * m - 1


def group_labels(
    y: np.ndarray, train_index: np.ndarray, test_size: float, seed: int, group: int, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` labellings of ``group`` and its training rows: ``(Y (n, m), train_rows)``.

    Group 0 uses the observed ``train_index`` and the true labels in column 0.
    """
    y = np.asarray(y).astype(np.int8)
    if group == 0:
        base, train = y, np.sort(np.asarray(train_index))
    else:
        rng = _seeding.stream(seed, _seeding.FULL_PERMUTATION, group)
        base = rng.permutation(y)
        train, _ = _seeding.stratified_split(base, test_size, rng)
    test = np.setdiff1d(np.arange(y.size), train, assume_unique=True)
    Y = np.empty((y.size, m), dtype=np.int8)
    Y[:, 0] = base
    for j in range(1, m):
        rng = _seeding.stream(seed, _seeding.FULL_PERMUTATION, group, j)
        col = base.copy()
        col[train] = rng.permutation(base[train])
        col[test] = rng.permutation(base[test])
        Y[:, j] = col
    return Y, train


@dataclass(frozen=True, eq=False)
class FullPermutationNull:
    """Result of :func:`full_permutation_null`.

    Attributes
    ----------
    observed_accuracy : float
        held-out accuracy on the true labels and split, by the same
        fitting procedure as the null (for the batched solver this is the optimum's
        accuracy, which can differ from a non-converged scikit-learn fit).
    null_accuracies : ndarray
        ``(P,)`` in group order (P as used: ``K * m - 1``).
    n_permutations : int
        P as used (``>=`` the P asked for).
    n_groups, group_size : int
        ``K`` and ``m``.
    backend : str
        ``"ray"`` or ``"local"``.
    solver : str
        ``"batched-lbfgs"`` or the classifier's name.
    converged_fraction : float
        share of fits that met the solver's stopping rule (NaN for
        other classifiers).
    wall_s : float
        seconds.
    notes : tuple of str
    classifier : str
        The classifier refitted (:mod:`fovea_ray.stats.classifier`).
    observed_refit_accuracy : float or None
        The refit of the true labelling (a check on ``observed_accuracy``, the layer's fit).
    """

    observed_accuracy: float
    null_accuracies: np.ndarray
    n_permutations: int
    n_groups: int
    group_size: int
    backend: str
    solver: str
    converged_fraction: float
    wall_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    classifier: str = "standardized"
    observed_refit_accuracy: float | None = None

    @property
    def statistic(self) -> float:
        """The observed held-out accuracy."""
        return self.observed_accuracy

    @property
    def pvalue(self) -> float:
        """``(1 + #{null >= observed}) / (P + 1)``."""
        from fovea_ray.stats.kim import permutation_pvalue

        return permutation_pvalue(self.observed_accuracy, self.null_accuracies)

    def outcome(self, alpha: float, precision: str) -> TestOutcome:
        """The ``full_permutation`` :class:`TestOutcome`."""
        details = {"n_permutations": self.n_permutations, "solver": self.solver, "precision": precision}
        return TestOutcome(
            "full_permutation", self.statistic, self.pvalue, alpha, alternative="greater", details=details
        )

    def to_record(self, *, alpha: float, n_requested: int, precision: str) -> dict:
        """The ``full_permutation`` entry of a layer's ``c2st`` record in ``results.json``."""
        p = self.pvalue
        return {
            "n_permutations": self.n_permutations,
            "n_permutations_requested": int(n_requested),
            "n_groups": self.n_groups,
            "group_size": self.group_size,
            "p": p,
            "reject": bool(p <= alpha),
            "observed_accuracy": self.observed_accuracy,
            "observed_refit_accuracy": self.observed_refit_accuracy,
            "classifier": self.classifier,
            "null_accuracies": self.null_accuracies.tolist(),
            "solver": self.solver,
            "precision": precision,
            "backend": self.backend,
            "converged_fraction": self.converged_fraction,
            "wall_s": self.wall_s,
        }


def _accuracies(decision: np.ndarray, Y: np.ndarray, train: np.ndarray) -> np.ndarray:
    test = np.ones(Y.shape[0], dtype=bool)
    test[train] = False
    return ((decision[test] > 0) == (Y[test] == 1)).mean(axis=0)


def _features_for(X: np.ndarray, train: np.ndarray, spec, groups) -> np.ndarray:
    """The classifier's features for one split: standardised with that split's training rows."""
    from fovea_ray.stats.classifier import standardize_with

    return standardize_with(X, train, groups) if spec.standardizes else X


def _batched_group(X, groups, y, train_index, test_size, seed, m, spec, device, precision, group):
    """Fit one group's ``m`` labellings with the batched solver; their held-out accuracies.

    The labellings of a group share its training rows, so its design (features
    standardised with those rows' statistics, as the observed fit's) is prepared once.
    """
    from fovea_ray.stats.solver import fit_logistic_batched, prepare_design

    Y, train = group_labels(y, train_index, test_size, seed, group, m)
    design = prepare_design(
        _features_for(X, train, spec, groups), C=spec.C, curvature_rows=int(train.size), basis_rows=train
    )
    fit = fit_logistic_batched(
        design, Y, train_rows=train, device=device, precision=precision, stable_signs=precision != "float32"
    )
    return _accuracies(fit.decision[0], Y, train), fit.converged[0]


def _sklearn_group(X, y, train_index, test_size, seed, m, spec, group):
    """Refit the classifier (a fresh clone) for each labelling of the group."""
    Y, train = group_labels(y, train_index, test_size, seed, group, m)
    test = np.setdiff1d(np.arange(y.size), train, assume_unique=True)
    acc = np.empty(m)
    for j in range(m):
        est = spec.estimator_for_refits()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the study's lbfgs stops at max_iter, as in its own fit
            est.fit(X[train], Y[train, j])
        acc[j] = float(np.mean(np.asarray(est.predict(X[test])) == Y[test, j]))
    return acc, np.ones(m, dtype=bool)


def full_permutation_null(
    X,
    y,
    train_index,
    *,
    n_permutations: int,
    seed: int,
    test_size: float,
    classifier=None,
    groups=None,
    group_size: int = GROUP_SIZE,
    device: str = "cpu",
    precision: str = "mixed",
    executor: Executor | None = None,
    observed: float | None = None,
    say=None,
) -> FullPermutationNull:
    """Null accuracies of the full permutation test (see the module docstring).

    Parameters
    ----------
    X : array (n, d)
        Float features, raw: each refit standardises with its own training rows when
        the classifier does (:mod:`fovea_ray.stats.classifier`).
    y : array (n,)
        Labels in {0, 1}.
    train_index : array
        The observed split's training rows.
    n_permutations : int
        P asked for (rounded up to fill equal groups).
    seed : int
        Master seed.
    test_size : float
        Held-out fraction of each re-split.
    classifier : str, ClassifierSpec or estimator, optional
        ``"standardized"`` (default) or ``"unscaled"``: the batched L2-logistic solver,
        one design per group; ``"study"`` or an sklearn estimator: cloned and refitted
        per labelling.
    groups : array, optional
        Each column's channel (the standardized classifier's per-channel scale).
    group_size : int
        Labellings per group (one executor item, one batched solve).
    device : str
        ``"cpu"`` or ``"cuda"`` for the batched solver.
    precision : {"mixed", "float32", "float64"}
        The solver's precision (:data:`fovea_ray.names.PRECISIONS`): ``"mixed"``
        (float32 GEMMs, float64 finish with the stable-held-out-signs stop; default).
    executor : Executor, optional
        Where the groups run (:mod:`fovea_ray.stats.executor`; default in this process).
        The result does not depend on it.
    observed : float, optional
        The observed statistic: the held-out accuracy of the layer's own fit on the true
        labels and split (:func:`fovea_ray.stats.classifier.fit_split`), so that one fit
        serves every test of the layer. The refit of the true labelling (the first
        labelling of group 0, the same procedure) is kept as a check
        (``observed_refit_accuracy``). None: use the refit.
    say : callable, optional
        Called with the measured cost of the first group and the estimate for the rest
        (when there is more than one group).

    Returns
    -------
    FullPermutationNull
    """
    from fovea_ray.stats.classifier import ClassifierSpec

    t0 = time.perf_counter()
    X = check_features(X)
    y = check_labels(y, X.shape[0])
    precision = check_precision(precision)
    spec = ClassifierSpec.resolve(classifier)
    K, m, P_used = group_layout(n_permutations, group_size)
    train_index = np.sort(np.asarray(train_index))
    if spec.batched:
        group = partial(_batched_group, X, groups, y, train_index, test_size, seed, m, spec, device, precision)
    else:
        group = partial(_sklearn_group, X, y, train_index, test_size, seed, m, spec)
    if say is not None and K > 1:
        # Measure the first group here, then say what the rest will cost before running them.
        t1 = time.perf_counter()
        first = group(0)
        per_group = time.perf_counter() - t1
        say(
            f"full permutation: P = {P_used} in {K} groups of {m}; the first took {per_group:.1f} s, so the "
            f"other {K - 1} need about {per_group * (K - 1):.0f} s of one worker's time"
        )
        results = [first, *(executor or in_process)(group, range(1, K))]
    else:
        results = list((executor or in_process)(group, range(K)))
    acc = np.concatenate([r[0] for r in results])
    conv = np.concatenate([r[1] for r in results])
    notes = []
    if P_used != int(n_permutations):
        notes.append(
            f"full permutation: P rounded up from {n_permutations} to {P_used} "
            f"({K} groups of {m} sharing a split; equal groups keep the p-value exact)"
        )
    if spec.batched and not conv.all():
        notes.append(f"{int((~conv).sum())} of {conv.size} full-permutation fits stopped before the solver tolerance")
    refit = float(acc[0])
    if observed is not None and abs(float(observed) - refit) > 1e-12:
        notes.append(
            f"full permutation: the refit of the true labels scored {refit:.4f}, "
            f"the layer's fit {float(observed):.4f}; "
            "the two fits of one objective disagree on a held-out prediction (a rounding tie at the boundary)"
        )
    return FullPermutationNull(
        observed_accuracy=refit if observed is None else float(observed),
        null_accuracies=acc[1:],
        n_permutations=P_used,
        n_groups=K,
        group_size=m,
        backend=executor_name(executor),
        solver="batched-lbfgs"
        if spec.batched
        else ("LogisticRegression" if spec.name == "study" else type(spec.estimator).__name__),
        converged_fraction=float(conv.mean()) if spec.batched else float("nan"),
        wall_s=time.perf_counter() - t0,
        notes=tuple(notes),
        classifier=spec.name,
        observed_refit_accuracy=refit,
    )


def full_permutation_many(
    Xs,
    ys,
    train_masks,
    *,
    n_permutations: int,
    seeds,
    test_size: float,
    classifier: str = "standardized",
    groups=None,
    precision: str = "mixed",
    group_size: int = GROUP_SIZE,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Full permutation tests of ``G`` independent data sets of one shape, fitted together.

    For simulation studies (size and power): data set ``g`` gets exactly the labellings
    and the fitting procedure :func:`full_permutation_null` would use with
    ``seed = seeds[g]``, and each group index is one batched solve over all data sets.

    Parameters
    ----------
    Xs : array_like
        ``(G, n, d)`` raw features.
    ys : array_like
        ``(G, n)``.
    train_masks : array_like
        ``(G, n)`` the observed splits.
    seeds : sequence of int
        ``G`` master seeds.
    classifier : {"standardized", "unscaled"}
        A batched classifier (:mod:`fovea_ray.stats.classifier`).
    groups : array, optional
        Each column's channel (the standardized classifier's scale).

    Returns
    -------
    tuple of ndarray
        ``(observed (G,), null (G, P used))`` held-out accuracies.
    """
    from fovea_ray.stats.classifier import ClassifierSpec
    from fovea_ray.stats.solver import fit_logistic_batched, prepare_design

    spec = ClassifierSpec.resolve(classifier)
    if not spec.batched:
        raise ValueError(f"full_permutation_many fits batched classifiers only, got {spec.name!r}")
    Xs = np.asarray(Xs, dtype=np.float64)
    ys = np.asarray(ys).astype(np.int8)
    masks = np.asarray(train_masks, dtype=bool)
    G, n, _ = Xs.shape
    if ys.shape != (G, n) or masks.shape != (G, n) or len(seeds) != G:
        raise ValueError("Xs (G, n, d), ys (G, n), train_masks (G, n) and G seeds must agree")
    K, m, _ = group_layout(n_permutations, group_size)
    out = []
    for k in range(K):
        labs = [group_labels(ys[g], np.flatnonzero(masks[g]), test_size, int(seeds[g]), k, m) for g in range(G)]
        Y = np.stack([lab[0] for lab in labs])
        rows = np.stack([lab[1] for lab in labs])
        feats = np.stack([_features_for(Xs[g], rows[g], spec, groups) for g in range(G)])
        design = prepare_design(feats, C=spec.C, curvature_rows=int(rows.shape[1]), basis_rows=rows)
        fit = fit_logistic_batched(
            design, Y, train_rows=rows, device=device, precision=precision, stable_signs=precision != "float32"
        )
        out.append(np.stack([_accuracies(fit.decision[g], Y[g], rows[g]) for g in range(G)]))
    acc = np.concatenate(out, axis=1)
    return acc[:, 0], acc[:, 1:]
