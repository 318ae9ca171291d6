"""Permutation nulls of the classifier two-sample test: half and full.

* **Half permutation** (Kim et al., 2016; the study's test): the classifier fitted on the
  training half stays fixed; the held-out labels are permuted ``P`` times and the
  accuracy recomputed. Cheap, valid, but it ignores the variability of training.
* **Full permutation** (the study's "future work"): the labels of the whole sample are
  permuted, the sample is re-split (stratified by the permuted labels), the classifier
  refitted and scored, ``P`` times. The observed statistic is computed by the very same
  procedure on the true labels and split, so ``(1 + #{null >= observed}) / (P + 1)`` is an
  exact p-value under H0 (exchangeable labels).

Full permutations run as Ray tasks, each fitting a fixed chunk of permutation indices.
Permutation ``i``'s labels and split come from ``SeedSequence(seed, spawn_key=(2, i))``
and the chunking depends only on ``P`` and ``chunk_size``, so the null accuracies are
bit-identical whatever the number of workers and under task retries. ``X`` goes into
the object store once (as the prepared design of the batched solver). With the default
logistic classifier each chunk is one call of the batched solver
(:func:`fovea_ray.stats.solver.fit_logistic_batched`); other classifiers are cloned and
refitted one permutation at a time.

References:
    Kim, I., Ramdas, A., Singh, A. & Wasserman, L. (2021). Classification accuracy as a
    proxy for two-sample testing. Annals of Statistics 49(1), 411-434.
    Ojala, M. & Garriga, G. C. (2010). Permutation tests for studying classifier
    performance. JMLR 11, 1833-1863.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fovea_ray.stats import _seeding
from fovea_ray.stats._progress import Progress

__all__ = ["FullPermutationNull", "full_permutation_null", "half_permutation_null", "permuted_split"]


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


def permuted_split(y: np.ndarray, test_size: float, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Permutation ``index`` of the full test: ``(permuted labels, train mask)``."""
    rng = _seeding.stream(seed, _seeding.FULL_PERMUTATION, index)
    yp = rng.permutation(np.asarray(y))
    train, _ = _seeding.stratified_split(yp, test_size, rng)
    mask = np.zeros(yp.shape[0], dtype=bool)
    mask[train] = True
    return yp, mask


@dataclass(frozen=True, eq=False)
class FullPermutationNull:
    """Result of :func:`full_permutation_null`.

    Attributes:
        observed_accuracy: held-out accuracy on the true labels and split, by the same
            fitting procedure as the null (for the batched solver this is the exact
            optimum's accuracy, which can differ from a non-converged scikit-learn fit).
        null_accuracies: ``(P,)`` in permutation-index order.
        backend: ``"ray"`` or ``"local"``; ``solver``: ``"batched-lbfgs"`` or the classifier's name.
        converged_fraction: share of fits that met the solver tolerance (NaN for other classifiers).
        chunk_size, n_chunks, wall_s: how the work was cut and how long it took.
    """

    observed_accuracy: float
    null_accuracies: np.ndarray
    backend: str
    solver: str
    converged_fraction: float
    chunk_size: int
    n_chunks: int
    wall_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)


def _set_threads_from_ray() -> None:
    import torch

    try:
        import ray

        # Outside a Ray worker leave torch alone (and never start Ray by asking).
        if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
            return
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(round(cpus))))
    except Exception:  # noqa: BLE001 - leave torch's setting alone
        pass


def _batched_chunk(design, y, test_size, seed, indices, observed_mask, device, dtype_name):
    """Fit one chunk of permutations (and the observed labels when ``observed_mask`` is given)."""
    from fovea_ray.stats.solver import fit_logistic_batched

    _set_threads_from_ray()
    cols_y, cols_m = [], []
    if observed_mask is not None:
        cols_y.append(np.asarray(y))
        cols_m.append(np.asarray(observed_mask))
    for i in indices:
        yp, m = permuted_split(y, test_size, seed, int(i))
        cols_y.append(yp)
        cols_m.append(m)
    Y = np.stack(cols_y, axis=1).astype(np.float64)
    M = np.stack(cols_m, axis=1).astype(np.float64)
    fit = fit_logistic_batched(design, Y, M, device=device, precision=dtype_name)
    pred = fit.decision[0] > 0
    test = M == 0
    acc = ((pred == (Y > 0.5)) & test).sum(axis=0) / test.sum(axis=0)
    return acc, fit.converged[0]


def _sklearn_chunk(X, y, test_size, seed, indices, classifier):
    """Refit a clone of ``classifier`` for each permutation of the chunk."""
    from sklearn.base import clone

    _set_threads_from_ray()
    out = np.empty(len(indices))
    for j, i in enumerate(indices):
        yp, m = permuted_split(y, test_size, seed, int(i))
        est = clone(classifier).fit(X[m], yp[m])
        out[j] = float(np.mean(est.predict(X[~m]) == yp[~m]))
    return out, np.ones(len(indices), dtype=bool)


def default_chunk_size(n_permutations: int) -> int:
    """Permutations per task: large enough for efficient GEMMs, small enough for progress."""
    return int(max(1, min(n_permutations, 128)))


def full_permutation_null(X, y, train_index, *, n_permutations: int, seed: int, test_size: float,
                          classifier=None, C: float = 1.0, use_ray: bool = True, address: str | None = None,
                          max_workers: int | None = None, chunk_size: int | None = None,
                          device: str = "cpu", dtype: str = "mixed", progress: bool = False,
                          observed_accuracy: float | None = None) -> FullPermutationNull:
    """Null accuracies of the full permutation test (see the module docstring).

    Args:
        X: ``(n, d)`` float features (already preprocessed); y: ``(n,)`` labels in {0, 1}.
        train_index: the observed split's training rows (for the observed statistic).
        n_permutations: P.
        seed: master seed; permutation ``i`` uses the stream ``(FULL_PERMUTATION, i)``.
        test_size: held-out fraction of each re-split.
        classifier: None for the batched L2-logistic solver with ``C`` (the default
            classifier); otherwise an sklearn estimator, cloned and refitted per permutation
            (then ``observed_accuracy`` must be given).
        use_ray: fan chunks out as Ray tasks (``address``: cluster or None for local);
            False runs them in this process, in the same chunks (same results).
        max_workers: at most this many chunks in flight (None: all at once).
        chunk_size: permutations per task (default :func:`default_chunk_size`).
        device: ``"cpu"`` or ``"cuda"`` for the batched solver (Ray tasks then ask for a GPU).
        dtype: the solver's ``precision``: ``"mixed"`` (default: float32 GEMMs, float64
            finish), ``"float32"`` or ``"float64"``.
        progress: show a progress bar on stderr.
    """
    t0 = time.perf_counter()
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int8)
    P = int(n_permutations)
    if P < 1:
        raise ValueError(f"n_permutations must be >= 1 for a full permutation test, got {P}")
    if dtype not in ("mixed", "float32", "float64"):
        raise ValueError(f"dtype must be 'mixed', 'float32' or 'float64', got {dtype!r}")
    cs = int(chunk_size) if chunk_size else default_chunk_size(P)
    if cs < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunks = [np.arange(a, min(a + cs, P)) for a in range(0, P, cs)]
    observed_mask = np.zeros(y.shape[0], dtype=bool)
    observed_mask[np.asarray(train_index)] = True
    batched = classifier is None
    if not batched and observed_accuracy is None:
        raise ValueError("observed_accuracy is required with a custom classifier")

    if batched:
        from fovea_ray.stats.solver import prepare_design

        payload = prepare_design(X, C=C, curvature_rows=int(observed_mask.sum()))
        def args_for(k):  # noqa: E306 - small closure, reads best here
            return (y, test_size, seed, chunks[k], observed_mask if k == 0 else None, device, dtype)
        fn = _batched_chunk
    else:
        payload = X
        def args_for(k):  # noqa: E306
            return (y, test_size, seed, chunks[k], classifier)
        fn = _sklearn_chunk

    bar = Progress(P, "full permutation", unit="permutations", enabled=progress)
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if use_ray:
        import ray

        from fovea_ray.cluster import connect

        connect(address)
        ref = ray.put(payload)
        opts = {"num_cpus": 1}
        if batched and str(device).startswith("cuda"):
            opts["num_gpus"] = 1
        remote = ray.remote(**opts)(fn)
        limit = max_workers if max_workers else len(chunks)
        todo = list(range(len(chunks)))
        inflight: dict = {}
        while todo or inflight:
            while todo and len(inflight) < limit:
                k = todo.pop(0)
                inflight[remote.remote(ref, *args_for(k))] = k
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for r in ready:
                k = inflight.pop(r)
                results[k] = ray.get(r)
                bar.update(len(chunks[k]))
        backend = "ray"
    else:
        for k in range(len(chunks)):
            results[k] = fn(payload, *args_for(k))
            bar.update(len(chunks[k]))
        backend = "local"
    bar.close()

    accs, convs = [], []
    obs = observed_accuracy
    for k in range(len(chunks)):
        acc, conv = results[k]
        if batched and k == 0:
            obs = float(acc[0])
            acc, conv = acc[1:], conv[1:]
        accs.append(acc)
        convs.append(conv)
    null = np.concatenate(accs)
    conv = np.concatenate(convs)
    notes = []
    if batched and not conv.all():
        notes.append(f"{int((~conv).sum())} of {conv.size} permutation fits stopped before the solver tolerance")
    return FullPermutationNull(
        observed_accuracy=float(obs), null_accuracies=null, backend=backend,
        solver="batched-lbfgs" if batched else type(classifier).__name__,
        converged_fraction=float(conv.mean()) if batched else float("nan"),
        chunk_size=cs, n_chunks=len(chunks), wall_s=time.perf_counter() - t0, notes=tuple(notes),
    )


def full_permutation_many(Xs, ys, train_masks, *, n_permutations: int, seeds, test_size: float,
                          C: float = 1.0, dtype: str = "mixed", device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Full permutation tests of ``G`` independent data sets of one shape, fitted at once.

    For simulation studies (size and power): data set ``g`` is permuted exactly as
    :func:`full_permutation_null` would with ``seed = seeds[g]`` (same labels, same
    re-splits), and all ``G * (P + 1)`` default-logistic fits run as one batched solve.

    Args:
        Xs: ``(G, n, d)``; ys: ``(G, n)``; train_masks: ``(G, n)`` the observed splits.
        seeds: ``G`` master seeds.

    Returns:
        ``(observed (G,), null (G, P))`` held-out accuracies.
    """
    from fovea_ray.stats.solver import fit_logistic_batched, prepare_design

    Xs = np.asarray(Xs, dtype=np.float64)
    ys = np.asarray(ys).astype(np.int8)
    masks = np.asarray(train_masks, dtype=bool)
    G, n, _ = Xs.shape
    P = int(n_permutations)
    if ys.shape != (G, n) or masks.shape != (G, n) or len(seeds) != G:
        raise ValueError("Xs (G, n, d), ys (G, n), train_masks (G, n) and G seeds must agree")
    Y = np.empty((G, n, P + 1))
    M = np.empty((G, n, P + 1))
    for g in range(G):
        Y[g, :, 0], M[g, :, 0] = ys[g], masks[g]
        for i in range(P):
            Y[g, :, i + 1], M[g, :, i + 1] = permuted_split(ys[g], test_size, int(seeds[g]), i)
    design = prepare_design(Xs, C=C, curvature_rows=int(masks[0].sum()))
    fit = fit_logistic_batched(design, Y, M, device=device, precision=dtype)
    test = M == 0
    acc = (((fit.decision > 0) == (Y > 0.5)) & test).sum(axis=1) / test.sum(axis=1)
    return acc[:, 0], acc[:, 1:]
