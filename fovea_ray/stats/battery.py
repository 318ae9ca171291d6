"""The test battery for one layer: every test on one ``(N, C, S)`` array of channel statistics.

``run_battery`` is a plain function (no Ray of its own except the optional full
permutation), so the layer sweep can run it as a Ray task per layer. It never raises for
small or awkward samples: a test that cannot run is recorded as skipped with its reason,
and the caveats go into ``warnings``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fovea_ray.stats.c2st import MIN_TEST_PER_CLASS, C2STResult, classifier_two_sample_test
from fovea_ray.stats.outcome import TestOutcome

__all__ = ["BatteryConfig", "accuracy_ci", "add_full_permutation", "flatten_features", "run_battery"]


@dataclass
class BatteryConfig:
    """Settings of one battery (all layers of a sweep share them).

    ``permutations``: P of the half-permutation test (0 skips it). ``full_permutations``:
    P of the full permutation test (0 skips it; the sweep runs it on the main layer only).
    ``mmd_permutations`` / ``odds_permutations``: P of the MMD and Cai et al. tests (0 skips
    MMD; the odds-ratio test then uses its Welch z). ``mmd_max_samples``: MMD's kernel is
    n x n, so larger samples are subsampled (seeded) to this many per type.
    """

    alpha: float = 0.01
    test_size: float = 0.5
    permutations: int = 100
    full_permutations: int = 0
    seed: int = 0
    standardize: bool = False
    mmd_permutations: int = 500
    mmd_max_samples: int = 2500
    odds_permutations: int = 1000
    fdr: float = 0.05
    top_k: int = 9
    device: str = "cpu"
    solver_dtype: str = "mixed"
    use_ray: bool = True
    address: str | None = None
    max_workers: int | None = None
    progress: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def accuracy_ci(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval for an accuracy of ``correct / n``."""
    from scipy import stats

    if n <= 0:
        return (math.nan, math.nan)
    ci = stats.binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def flatten_features(values: np.ndarray, stat_names: Sequence[str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """``(N, C, S) -> (N, S * C)`` statistic-major (all means, then all maxima: the study's
    column order), and the ``(channel, stat)`` name of every column."""
    N, C, S = values.shape
    flat = np.ascontiguousarray(values.transpose(0, 2, 1).reshape(N, S * C))
    names = [(c, str(stat_names[s])) for s in range(S) for c in range(C)]
    return flat, names


def _c2st_record(res: C2STResult, ci: tuple[float, float]) -> dict[str, Any]:
    return {
        "accuracy": res.accuracy,
        "accuracy_ci": list(ci),
        "accuracy_ci_method": "clopper-pearson 95%",
        "confusion": res.confusion.tolist(),
        "confusion_orientation": "confusion[true][predicted], class order (0, 1): [[TN, FP], [FN, TP]]",
        "e0": res.e0,
        "e1": res.e1,
        "te0": res.te0,
        "te1": res.te1,
        "statistic": res.statistic,
        "p_asymptotic": res.p_asymptotic,
        "reject_asymptotic": res.reject_asymptotic,
        "classifier": res.classifier_name,
        "converged": res.converged,
        "n_iter": res.n_iter,
        "standardize": res.standardize,
        "n_train": int(res.train_index.size),
        "n_test": int(res.test_index.size),
    }


def run_battery(
    values,
    y,
    stat_names: Sequence[str],
    config: BatteryConfig,
    *,
    name: str = "layer",
    kind: str = "layer",
    full_permutations: int | None = None,
    figure_data: bool = False,
) -> dict[str, Any]:
    """Run every test on one layer's ``(N, C, S)`` values; return a JSON-able record.

    Args:
        values: ``(N, C, S)`` float per-sample channel statistics (only good samples).
        y: ``(N,)`` labels (1 = type 1).
        stat_names: the S statistic names.
        config: :class:`BatteryConfig`.
        name, kind: the layer's name and ``"layer"`` or ``"control"``.
        full_permutations: overrides ``config.full_permutations`` (the sweep passes 0 for
            all but the main layer).
        figure_data: include the arrays the report's figures need (coefficients, the top
            features' held-out values, null accuracies, scores, per-channel AUC/p/q).

    The record's layout is documented in :mod:`fovea_ray.stats.results`.
    """
    t0 = time.perf_counter()
    cfg = config
    alpha = cfg.alpha
    v = np.asarray(values, dtype=np.float64)
    yy = np.asarray(y).reshape(-1).astype(np.int8)
    rec: dict[str, Any] = {"layer": name, "kind": kind, "stat_names": list(stat_names)}
    tests: list[TestOutcome] = []
    warn: list[str] = []
    if v.ndim != 3 or v.shape[0] != yy.shape[0]:
        raise ValueError(f"{name}: values must be (N, C, S) with N = {yy.shape[0]}, got {v.shape}")
    N, C, S = v.shape
    n1, n0 = int((yy == 1).sum()), int((yy == 0).sum())
    rec.update({"n": int(N), "n_type1": n1, "n_type0": n0, "channels": int(C), "d": int(C * S)})
    finite = np.isfinite(v).all(axis=(1, 2))
    if not finite.all():
        warn.append(f"{int((~finite).sum())} samples with NaN/inf values left out")
        v, yy = v[finite], yy[finite]
        n1, n0 = int((yy == 1).sum()), int((yy == 0).sum())
    if min(n1, n0) < 100:
        warn.append(f"n = {n1} type 1 and {n0} type 0: low power")
    X, names = flatten_features(v, stat_names)
    te_min = min(round(cfg.test_size * n1), round(cfg.test_size * n0))
    P_full = cfg.full_permutations if full_permutations is None else int(full_permutations)

    res = None
    c2st_names = [
        "kim_asymptotic",
        "kim_half_permutation",
        "full_permutation",
        "friedman_mann_whitney",
        "friedman_kolmogorov_smirnov",
        "dagostino_pearson_normality",
        "cai_odds_ratio",
    ]
    if min(n1, n0) < 2 or te_min < MIN_TEST_PER_CLASS:
        reason = (
            f"the held-out split would hold about {te_min} samples of the smaller type "
            f"(n = {n1} + {n0}); the classifier tests need >= {MIN_TEST_PER_CLASS} per type"
        )
        tests += [TestOutcome.skip(t, reason, alpha) for t in c2st_names]
        rec["c2st"] = None
    else:
        try:
            res = classifier_two_sample_test(
                X,
                yy,
                test_size=cfg.test_size,
                alpha=alpha,
                n_permutations=cfg.permutations,
                permutation="half" if cfg.permutations > 0 else "none",
                seed=cfg.seed,
                standardize=cfg.standardize,
            )
        except Exception as exc:  # noqa: BLE001 - record, never abort the sweep
            tests += [TestOutcome.skip(t, f"{type(exc).__name__}: {exc}", alpha) for t in c2st_names]
            rec["c2st"] = None
    if res is not None:
        warn += [w for w in res.warnings if w not in warn]  # the same caveat once
        correct = int(round(res.accuracy * res.test_index.size))
        rec["c2st"] = _c2st_record(res, accuracy_ci(correct, res.test_index.size))
        tests.append(
            TestOutcome(
                "kim_asymptotic",
                res.statistic,
                res.p_asymptotic,
                alpha,
                alternative="less",
                details={"accuracy": res.accuracy},
            )
        )
        if res.permutation == "half":
            tests.append(
                TestOutcome(
                    "kim_half_permutation",
                    res.accuracy,
                    res.p_permutation,
                    alpha,
                    alternative="greater",
                    details={
                        "n_permutations": res.n_permutations,
                        "order_statistic_k": res.order_statistic_k,
                        "order_statistic_threshold": res.order_statistic_threshold,
                        "reject_order_statistic_rule": res.reject_permutation,
                    },
                )
            )
            rec["c2st"]["half_permutation"] = {
                "n_permutations": res.n_permutations,
                "p": res.p_permutation,
                "reject": res.reject_permutation,
                "rule": "reject if accuracy > k-th smallest of the P+1 accuracies, k = ceil((1-alpha)(1+P))",
                "k": res.order_statistic_k,
                "threshold": res.order_statistic_threshold,
                "observed_accuracy": res.accuracy,
                "null_accuracies": res.null_accuracies.tolist() if figure_data else None,
            }
        else:
            tests.append(TestOutcome.skip("kim_half_permutation", "permutations = 0", alpha))
        if P_full > 0:
            outcome, part, notes = full_permutation_part(X, yy, res.train_index, cfg, P_full)
            tests.append(outcome)
            warn += notes
            if part is not None:
                rec["c2st"]["full_permutation"] = part
        else:
            tests.append(TestOutcome.skip("full_permutation", "full permutations = 0 for this layer", alpha))
        y_train = yy[res.train_index]
        n_train = (int((y_train == 0).sum()), int((y_train == 1).sum()))
        tests += _score_tests(res, n_train, cfg, alpha, rec, figure_data)
        if figure_data:
            rec["figures"] = _figure_data(res, X, names, C, stat_names, cfg.top_k)

    # MMD on all good samples (subsampled per type when large).
    if cfg.mmd_permutations > 0 and min(n1, n0) >= 2:
        try:
            from fovea_ray.stats import _seeding
            from fovea_ray.stats.mmd import mmd_test

            Xm, ym = X, yy
            if max(n1, n0) > cfg.mmd_max_samples:
                rng = _seeding.stream(cfg.seed, _seeding.MMD_PERMUTATION, 2)
                keep = np.concatenate(
                    [
                        rng.choice(np.flatnonzero(yy == c), size=min(cfg.mmd_max_samples, m), replace=False)
                        for c, m in ((0, n0), (1, n1))
                    ]
                )
                keep.sort()
                Xm, ym = X[keep], yy[keep]
                warn.append(f"MMD on a seeded subsample of {cfg.mmd_max_samples} per type")
            tests.append(
                mmd_test(Xm, ym, n_permutations=cfg.mmd_permutations, seed=cfg.seed, alpha=alpha, device=cfg.device)
            )
        except Exception as exc:  # noqa: BLE001
            tests.append(TestOutcome.skip("mmd", f"{type(exc).__name__}: {exc}", alpha))
    else:
        tests.append(
            TestOutcome.skip(
                "mmd",
                "mmd_permutations = 0"
                if cfg.mmd_permutations <= 0
                else f"MMD needs >= 2 samples per type (n = {n1} + {n0})",
                alpha,
            )
        )

    # Per-channel selectivity.
    if min(n1, n0) >= 2:
        try:
            from fovea_ray.stats.selectivity import channel_selectivity

            sel = channel_selectivity(v, yy, stat_names=stat_names, fdr=cfg.fdr)
            rec["selectivity"] = {
                "fdr": sel.fdr,
                "test": "two-sided Mann-Whitney U per channel and statistic; BH across channels",
                "auc_meaning": "P(type-1 value > type-0 value); > 0.5 prefers type 1 (sharp)",
                "per_stat": sel.counts,
                "n_selective": sel.n_selective,
                "n_prefer_type1": int(sum(c["n_prefer_type1"] for c in sel.counts.values())),
                "n_prefer_type0": int(sum(c["n_prefer_type0"] for c in sel.counts.values())),
            }
            if figure_data:
                rec["selectivity"]["channels"] = {
                    "auc": sel.auc.tolist(),
                    "p": sel.p.tolist(),
                    "q": sel.q.tolist(),
                    "layout": "[channel][stat]",
                }
            if min(n1, n0) < 10:
                warn.append("per-channel tests with fewer than 10 samples per type have almost no power")
        except Exception as exc:  # noqa: BLE001
            rec["selectivity"] = None
            warn.append(f"selectivity skipped: {type(exc).__name__}: {exc}")
    else:
        rec["selectivity"] = None

    rec["tests"] = [t.to_dict() for t in tests]
    rec["warnings"] = warn
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def full_permutation_part(
    X: np.ndarray, y: np.ndarray, train_index: np.ndarray, cfg: BatteryConfig, n_permutations: int
) -> tuple[TestOutcome, dict | None, list[str]]:
    """Run the full permutation test on flattened ``X``; its test record and c2st entry."""
    from fovea_ray.stats._validate import standardize_columns
    from fovea_ray.stats.kim import permutation_pvalue
    from fovea_ray.stats.permutation import full_permutation_null

    try:
        Xf = standardize_columns(X) if cfg.standardize else X
        full = full_permutation_null(
            Xf,
            y,
            train_index,
            n_permutations=n_permutations,
            seed=cfg.seed,
            test_size=cfg.test_size,
            use_ray=cfg.use_ray,
            address=cfg.address,
            max_workers=cfg.max_workers,
            device=cfg.device,
            dtype=cfg.solver_dtype,
            progress=cfg.progress,
        )
    except Exception as exc:  # noqa: BLE001 - record, never abort the sweep
        return TestOutcome.skip("full_permutation", f"{type(exc).__name__}: {exc}", cfg.alpha), None, []
    p_full = permutation_pvalue(full.observed_accuracy, full.null_accuracies)
    outcome = TestOutcome(
        "full_permutation",
        full.observed_accuracy,
        p_full,
        cfg.alpha,
        alternative="greater",
        details={"n_permutations": full.n_permutations, "solver": full.solver, "solver_dtype": cfg.solver_dtype},
    )
    part = {
        "n_permutations": full.n_permutations,
        "n_permutations_requested": int(n_permutations),
        "n_groups": full.n_groups,
        "group_size": full.group_size,
        "p": p_full,
        "reject": bool(p_full <= cfg.alpha),
        "observed_accuracy": full.observed_accuracy,
        "null_accuracies": full.null_accuracies.tolist(),
        "solver": full.solver,
        "solver_dtype": cfg.solver_dtype,
        "backend": full.backend,
        "converged_fraction": full.converged_fraction,
        "wall_s": full.wall_s,
    }
    return outcome, part, list(full.notes)


def add_full_permutation(
    rec: dict[str, Any], values, y, stat_names: Sequence[str], cfg: BatteryConfig, n_permutations: int
) -> dict[str, Any]:
    """Add the full permutation test to a layer record made with ``full_permutations=0``.

    The split is re-derived from the seed (the same stratified split the record's
    classifier used), so the observed statistic matches. Used by the layer sweep, which
    runs layers as Ray tasks and the (itself Ray-parallel) full permutation on the driver.
    """
    from fovea_ray.stats import _seeding

    if rec.get("c2st") is None or n_permutations <= 0:
        return rec
    v = np.asarray(values, dtype=np.float64)
    yy = np.asarray(y).reshape(-1).astype(np.int8)
    finite = np.isfinite(v).all(axis=(1, 2))
    v, yy = v[finite], yy[finite]
    X, _ = flatten_features(v, stat_names)
    train, _ = _seeding.stratified_split(yy, cfg.test_size, _seeding.stream(cfg.seed, _seeding.SPLIT))
    outcome, part, notes = full_permutation_part(X, yy, train, cfg, n_permutations)
    rec["tests"] = [t for t in rec["tests"] if t["name"] != "full_permutation"] + [outcome.to_dict()]
    if part is not None:
        rec["c2st"]["full_permutation"] = part
    rec["warnings"] = list(rec.get("warnings", [])) + notes
    return rec


def _score_tests(
    res: C2STResult, n_train: tuple[int, int], cfg: BatteryConfig, alpha: float, rec: dict, figure_data: bool
) -> list[TestOutcome]:
    from fovea_ray.stats.scores import friedman_score_tests, odds_ratio_test, score_normality

    out: list[TestOutcome] = []
    try:
        fr = friedman_score_tests(res.scores_test, res.y_test, alpha=alpha)
        out += [fr["mann_whitney"], fr["kolmogorov_smirnov"]]
    except Exception as exc:  # noqa: BLE001
        out += [
            TestOutcome.skip(n, f"{type(exc).__name__}: {exc}", alpha)
            for n in ("friedman_mann_whitney", "friedman_kolmogorov_smirnov")
        ]
    try:
        out.append(score_normality(res.scores_test, alpha=alpha))
    except Exception as exc:  # noqa: BLE001
        out.append(TestOutcome.skip("dagostino_pearson_normality", f"{type(exc).__name__}: {exc}", alpha))
    try:
        out.append(
            odds_ratio_test(
                res.scores_test,
                res.y_test,
                n_train=n_train,
                n_permutations=cfg.odds_permutations,
                seed=cfg.seed,
                alpha=alpha,
            )
        )
    except Exception as exc:  # noqa: BLE001
        out.append(TestOutcome.skip("cai_odds_ratio", f"{type(exc).__name__}: {exc}", alpha))
    if figure_data:
        rec["scores"] = {
            "kind": "decision_function (log-odds) on the held-out split",
            "y": res.y_test.astype(int).tolist(),
            "score": res.scores_test.tolist(),
        }
    return out


def _figure_data(res: C2STResult, X: np.ndarray, names, C: int, stat_names, top_k: int) -> dict[str, Any]:
    fig: dict[str, Any] = {}
    if res.coef is not None and res.coef.size == X.shape[1]:
        S = len(stat_names)
        coef = res.coef.reshape(S, C)  # statistic-major columns
        fig["coefficients"] = {
            "stat_names": list(stat_names),
            "coef": coef.tolist(),
            "layout": "[stat][channel]",
            "intercept": res.intercept,
        }
        order = np.argsort(-np.abs(res.coef), kind="stable")[:top_k]
        Xte = X[res.test_index]
        fig["top_features"] = {
            "by": "|coefficient|",
            "test_labels": res.y_test.astype(int).tolist(),
            "features": [
                {
                    "rank": i + 1,
                    "channel": int(names[j][0]),
                    "stat": names[j][1],
                    "coef": float(res.coef[j]),
                    "test_values": Xte[:, j].tolist(),
                }
                for i, j in enumerate(order)
            ],
        }
    return fig
