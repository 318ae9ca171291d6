"""Benchmark: the full permutation test with the batched solver against scikit-learn refits.

Data: activation-like gamma features (fovea_ray.stats.simulate.activation_like), n = 5000
samples (2500 per type), d = 2048 (1024 channels x mean, max), kappa = 1/2, the study's
L2 logistic regression (C = 1), no standardisation.

Measured in one run:
  1. fovea-ray's full permutation test, P = 1000 (rounded up to equal groups), on Ray
     (local, --workers tasks in flight), default precision: wall time, including preparing
     the design (eigendecomposition) and the Ray fan-out, excluding Ray's start-up.
  2. Baseline A: sequential scikit-learn refits, LogisticRegression(C=1, lbfgs,
     max_iter=500) (the study's classifier), on --baseline permutations of the same kind
     (permuted labels, stratified re-split): seconds per refit.
  3. Baseline B: sklearn.model_selection.permutation_test_score(n_jobs=2) with one
     stratified 50/50 split, --baseline permutations: seconds per permutation.
  4. Agreement (--agreement K): for K permuted label vectors, the held-out accuracy of the
     default precision against the float64 optimum (tol 1e-10) of the same solver; and,
     for --sklearn-tight columns, the objective against scikit-learn lbfgs run to a tight
     tolerance (noting whether scikit-learn converged).

Prints per-permutation times and the ratios. Example (the figures in benchmarks/README.md):

    python benchmarks/bench_permutation.py --permutations 1000 --baseline 4 --agreement 100
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np


def _objective(X, y, coef, intercept, C=1.0):
    z = X @ coef + intercept
    return 0.5 * coef @ coef + C * np.sum(np.logaddexp(0.0, -(2 * y - 1) * z))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--channels", type=int, default=1024)
    ap.add_argument("--permutations", type=int, default=1000, help="P of the full test (0: skip)")
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=None, help="groups in flight (default: all; Ray runs one per CPU)")
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="mixed")
    ap.add_argument("--baseline", type=int, default=4, help="permutations for each scikit-learn baseline (0: skip)")
    ap.add_argument("--agreement", type=int, default=100, help="label vectors for the accuracy agreement (0: skip)")
    ap.add_argument("--sklearn-tight", type=int, default=0, help="columns for the objective check vs tight sklearn")
    ap.add_argument("--scale", type=float, default=1.0, help="feature scale (smaller: better conditioned)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--classifier",
        default="unscaled",
        help="unscaled (the study's objective, as the scikit-learn baselines fit it) or standardized "
        "(the default of fovea-ray test: a design per group, standardised with its training split)",
    )
    args = ap.parse_args()

    import ray
    import sklearn
    import torch

    from fovea_ray.stats import _seeding
    from fovea_ray.stats.simulate import activation_like

    X, y = activation_like(args.n, args.channels, args.seed, shift=0.05, shifted_channels=64, scale=args.scale)
    train, _ = _seeding.stratified_split(y, 0.5, _seeding.stream(args.seed, _seeding.SPLIT))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), sklearn {sklearn.__version__}, ray {ray.__version__}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"data: n = {args.n}, d = {X.shape[1]}, train/test 50/50, C = 1, classifier {args.classifier}, "
        f"scale {args.scale}"
    )

    # 1. fovea-ray, full permutation on Ray.
    ours = fits = None
    if args.permutations > 0:
        ours, fits = _full(args, X, y, train)
    if args.baseline > 0:
        _baselines(args, X, y, train, ours, fits)
    if args.agreement > 0:
        _agreement(args, X, y, train)


def _full(args, X, y, train):
    import ray

    from fovea_ray.cluster import RayExecutor
    from fovea_ray.stats.kim import permutation_pvalue
    from fovea_ray.stats.permutation import full_permutation_null

    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
    print(f"ray start-up: {time.perf_counter() - t:.1f} s (not counted)")
    t = time.perf_counter()
    full = full_permutation_null(
        X,
        y,
        train,
        n_permutations=args.permutations,
        seed=args.seed,
        test_size=0.5,
        classifier=args.classifier,
        groups=np.tile(np.arange(args.channels), 2) if args.classifier == "standardized" else None,
        group_size=args.group_size,
        device=args.device,
        precision=args.precision,
        executor=RayExecutor(
            max_in_flight=args.workers, num_gpus=1 if args.device.startswith("cuda") else 0, progress=True
        ),
    )
    ours = time.perf_counter() - t
    fits = full.n_permutations + 1
    p = permutation_pvalue(full.observed_accuracy, full.null_accuracies)
    print(
        f"fovea-ray full permutation ({args.classifier}): P = {full.n_permutations} "
        f"({full.n_groups} groups of {full.group_size}), "
        f"{ours:.1f} s wall ({ours / fits * 1e3:.1f} ms per refit), observed accuracy "
        f"{full.observed_accuracy:.4f}, p = {p:.4g}, converged {full.converged_fraction:.3f}"
    )
    ray.shutdown()
    return ours, fits


def _baselines(args, X, y, train, ours, fits):
    """2./3. scikit-learn baselines on the same kind of labellings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, permutation_test_score

    from fovea_ray.stats.permutation import group_labels

    Yb, tr_b = group_labels(y, train, 0.5, args.seed, 1, args.baseline)
    t = time.perf_counter()
    conv = []
    for j in range(args.baseline):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            LogisticRegression(C=1.0, solver="lbfgs", max_iter=500).fit(X[tr_b], Yb[tr_b, j])
        conv.append(not caught)
    seq = (time.perf_counter() - t) / args.baseline
    print(
        f"baseline A, sequential sklearn lbfgs (max_iter=500): {seq:.2f} s per refit "
        f"({sum(conv)}/{args.baseline} converged)"
    )
    cv = StratifiedShuffleSplit(n_splits=1, test_size=0.5, random_state=args.seed)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        permutation_test_score(
            LogisticRegression(C=1.0, solver="lbfgs", max_iter=500),
            X,
            y,
            cv=cv,
            n_permutations=args.baseline,
            n_jobs=2,
            random_state=args.seed,
        )
    pts = (time.perf_counter() - t) / (args.baseline + 1)
    print(f"baseline B, sklearn permutation_test_score(n_jobs=2): {pts:.2f} s per permutation")
    if ours is None:
        return
    per = ours / fits
    print(
        f"RATIO per permutation: {seq / per:.1f}x faster than sequential sklearn refits, "
        f"{pts / per:.1f}x faster than permutation_test_score(n_jobs=2); "
        f"P = {args.permutations} by sequential sklearn would take ~{seq * (args.permutations + 1) / 60:.0f} min"
    )


def _agreement(args, X, y, train):
    """4. Agreement of the default precision with the float64 optimum (and scikit-learn)."""
    from sklearn.linear_model import LogisticRegression

    from fovea_ray.stats.permutation import group_labels
    from fovea_ray.stats.solver import fit_logistic_batched, prepare_design

    design = prepare_design(X, curvature_rows=train.size)
    Ya, tr_a = group_labels(y, train, 0.5, args.seed, 1, args.agreement)
    te_a = np.setdiff1d(np.arange(y.size), tr_a)
    acc = lambda f: ((f.decision[0][te_a] > 0) == (Ya[te_a] == 1)).mean(0)  # noqa: E731
    t = time.perf_counter()
    default = fit_logistic_batched(design, Ya, train_rows=tr_a, stable_signs=True, precision=args.precision)
    t_def = time.perf_counter() - t
    t = time.perf_counter()
    exact = fit_logistic_batched(design, Ya, train_rows=tr_a, precision="float64", tol=1e-10)
    t_ex = time.perf_counter() - t
    same = np.mean(acc(default) == acc(exact))
    rel = np.max(np.abs(default.objective - exact.objective) / exact.objective)
    print(
        f"agreement over {args.agreement} permuted label vectors: identical held-out accuracy "
        f"{same * 100:.0f}% (default precision {args.precision}, {default.n_iter} iterations, {t_def:.1f} s) vs "
        f"float64 optimum (tol 1e-10, {exact.n_iter} iterations, {t_ex:.1f} s); max relative objective "
        f"difference {rel:.1e}; float64 converged {exact.converged.mean():.2f}"
    )
    for j in range(args.sklearn_tight):
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = LogisticRegression(C=1.0, solver="lbfgs", tol=1e-10, max_iter=20000).fit(X[tr_a], Ya[tr_a, j])
        sk_obj = _objective(X[tr_a], Ya[tr_a, j], est.coef_[0], est.intercept_[0])
        ok = not caught
        rel = (exact.objective[0, j] - sk_obj) / sk_obj
        same_pred = np.array_equal(est.predict(X[te_a]) == 1, exact.decision[0][te_a, j] > 0)
        print(
            f"  column {j}: sklearn lbfgs tol 1e-10 {'converged' if ok else 'did NOT converge'} in "
            f"{int(est.n_iter_[0])} iterations ({time.perf_counter() - t:.0f} s); "
            f"objective ours {exact.objective[0, j]:.10g} "
            f"vs sklearn {sk_obj:.10g} (relative {rel:+.1e}); identical test predictions: {same_pred}"
        )


if __name__ == "__main__":
    main()
