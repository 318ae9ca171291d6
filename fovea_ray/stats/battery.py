"""The test battery for one layer: every test on one ``(N, C, S)`` array of channel statistics.

``run_battery`` is a plain function that reads as its steps (the layer's design, the
classifier tests, MMD, per-channel selectivity); the full permutation test's groups go
through the ``executor`` it is given (:mod:`fovea_ray.stats.executor`), so the layer sweep
can run batteries wherever it likes. It never raises for
small or awkward samples: a test that cannot run is recorded as skipped with its reason,
and the caveats go into ``warnings``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from fovea_ray.stats.c2st import MIN_TEST_PER_CLASS, C2STResult, accuracy_ci, c2st_split, classifier_two_sample_test
from fovea_ray.stats.classifier import CLASSIFIERS, DEFAULT_CLASSIFIER
from fovea_ray.stats.decision import AUTO, resolve_permutations
from fovea_ray.stats.executor import Executor
from fovea_ray.stats.outcome import TestOutcome

__all__ = ["BatteryConfig", "LayerDesign", "accuracy_ci", "add_full_permutation", "flatten_features", "run_battery"]

#: Where the full permutation test runs: the main layer only, or every layer.
FULL_LAYERS = ("main", "all")

_C2ST_TESTS = (
    "kim_asymptotic",
    "kim_half_permutation",
    "full_permutation",
    "friedman_mann_whitney",
    "friedman_kolmogorov_smirnov",
    "dagostino_pearson_normality",
    "cai_odds_ratio",
)


@dataclass(frozen=True)
class BatteryConfig:
    """The statistics settings of one battery (all layers of a sweep share them).

    Where the work runs (Ray or this process, the device) is not part of it: see
    :class:`fovea_ray.cluster.Execution` and the ``executor``/``device`` arguments.

    ``permutations``: P of the half-permutation test (0 skips it; ``"auto"``, the
    default: the smallest P that lets every decision reject, :mod:`fovea_ray.stats.decision`).
    ``full_permutations``: P of the full permutation test (0 skips it; ``"auto"``: the
    smallest P that can reject at ``alpha``). ``full_layers``: ``"main"`` runs it on the
    main layer, ``"all"`` on every layer. ``classifier``: ``"standardized"`` (default),
    ``"unscaled"`` or ``"study"`` (:mod:`fovea_ray.stats.classifier`).
    ``mmd_permutations`` / ``odds_permutations``: P of the MMD and Cai et al. tests (0 skips
    MMD; the odds-ratio test then uses its Welch z). ``mmd_max_samples``: MMD's kernel is
    n x n, so larger samples are subsampled (seeded) to this many per type.
    ``precision``: the batched solver's (:data:`fovea_ray.names.PRECISIONS`).
    """

    alpha: float = 0.01
    test_size: float = 0.5
    permutations: int | str = AUTO
    full_permutations: int | str = 0
    full_layers: str = "main"
    classifier: str = DEFAULT_CLASSIFIER
    seed: int = 0
    mmd_permutations: int = 500
    mmd_max_samples: int = 2500
    odds_permutations: int = 1000
    fdr: float = 0.05
    top_k: int = 9
    precision: str = "mixed"

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {self.classifier!r}")
        if self.full_layers not in FULL_LAYERS:
            raise ValueError(f"full_layers must be one of {', '.join(FULL_LAYERS)}, got {self.full_layers!r}")
        for name in ("permutations", "full_permutations"):
            resolve_permutations(getattr(self, name), 0.5, name=name)  # raises on a bad value

    def resolved(self, n_layers: int = 1) -> BatteryConfig:
        """This config with ``"auto"`` permutation counts replaced by the rule's ``P``
        for decisions over ``n_layers`` layers (:class:`fovea_ray.stats.decision.DecisionPlan`)."""
        return replace(
            self,
            permutations=resolve_permutations(self.permutations, self.alpha, n_layers),
            full_permutations=resolve_permutations(self.full_permutations, self.alpha, 1),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flatten_features(values: np.ndarray, stat_names: Sequence[str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """``(N, C, S) -> (N, S * C)`` statistic-major (all means, then all maxima: the study's
    column order), and the ``(channel, stat)`` name of every column."""
    N, C, S = values.shape
    flat = np.ascontiguousarray(values.transpose(0, 2, 1).reshape(N, S * C))
    names = [(c, str(stat_names[s])) for s in range(S) for c in range(C)]
    return flat, names


@dataclass(frozen=True, eq=False)
class LayerDesign:
    """One layer's finite samples: values ``(N, C, S)``, labels, the flat design ``X``."""

    values: np.ndarray
    y: np.ndarray
    X: np.ndarray
    columns: list[tuple[int, str]]
    stat_names: tuple[str, ...]
    n_total: int
    warnings: tuple[str, ...]
    rows: np.ndarray  # the kept samples' row indices in the input

    @classmethod
    def build(cls, values, y, stat_names: Sequence[str], name: str = "layer") -> LayerDesign:
        """Validate the shapes; leave out samples with NaN/inf values (with a note)."""
        v = np.asarray(values, dtype=np.float64)
        yy = np.asarray(y).reshape(-1).astype(np.int8)
        if v.ndim != 3 or v.shape[0] != yy.shape[0]:
            raise ValueError(f"{name}: values must be (N, C, S) with N = {yy.shape[0]}, got {v.shape}")
        notes = []
        finite = np.isfinite(v).all(axis=(1, 2))
        if not finite.all():
            notes.append(f"{int((~finite).sum())} samples with NaN/inf values left out")
            v, yy = v[finite], yy[finite]
        X, columns = flatten_features(v, stat_names)
        rows = np.flatnonzero(finite)
        return cls(v, yy, X, columns, tuple(stat_names), int(finite.size), tuple(notes), rows)

    @property
    def groups(self) -> np.ndarray:
        """Each column's channel (the standardized classifier scales a channel's statistics together)."""
        return np.array([c for c, _ in self.columns], dtype=np.int64)

    @property
    def counts(self) -> tuple[int, int]:
        """``(n1, n0)``: samples of type 1 and type 0."""
        return int((self.y == 1).sum()), int((self.y == 0).sum())

    def header(self, name: str, kind: str) -> dict[str, Any]:
        n1, n0 = self.counts
        N, C, S = self.values.shape
        return {
            "layer": name,
            "kind": kind,
            "stat_names": list(self.stat_names),
            "n": self.n_total,
            "n_type1": n1,
            "n_type0": n0,
            "channels": int(C),
            "d": int(C * S),
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
    device: str = "cpu",
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run every test on one layer's ``(N, C, S)`` values; return a JSON-able record.

    Parameters
    ----------
    values : array (N, C, S)
        Per-sample channel statistics (only good samples).
    y : array (N,)
        Labels (1 = type 1).
    stat_names : sequence of str
        The S statistic names.
    config : BatteryConfig
    name, kind : str
        The layer's name and ``"layer"`` or ``"control"``.
    full_permutations : int, optional
        Overrides ``config.full_permutations`` (the sweep passes 0 for all but the main layer).
    figure_data : bool
        Include the arrays the report's figures need (coefficients, the top features'
        held-out values, null accuracies, scores, per-channel AUC/p/q).
    device : str
        Where the batched solver and the MMD kernel run.
    executor : Executor, optional
        Where the full permutation test's groups run (default: this process).

    Returns
    -------
    dict
        The layer record documented in :mod:`fovea_ray.stats.results`.
    """
    t0 = time.perf_counter()
    cfg = config.resolved(1)  # a sweep passes counts already resolved for its layers
    design = LayerDesign.build(values, y, stat_names, name)
    rec = design.header(name, kind)
    warn = list(design.warnings)
    n1, n0 = design.counts
    if min(n1, n0) < 100:
        warn.append(f"n = {n1} type 1 and {n0} type 0: low power")  # the one low-power note
    P_full = int(cfg.full_permutations if full_permutations is None else full_permutations)
    rec["c2st"], tests = _classifier_part(design, cfg, P_full, figure_data, device, executor, rec, warn)
    tests.append(_mmd_part(design, cfg, device, warn))
    rec["selectivity"] = _selectivity_part(design, cfg, figure_data, warn)
    rec["tests"] = [t.to_dict() for t in tests]
    rec["warnings"] = warn
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def _classifier_part(
    design: LayerDesign,
    cfg: BatteryConfig,
    P_full: int,
    figure_data: bool,
    device: str,
    executor: Executor | None,
    rec: dict,
    warn: list[str],
) -> tuple[dict | None, list[TestOutcome]]:
    """Kim's tests, the full permutation test and the score tests: ``(c2st record, tests)``."""
    n1, n0 = design.counts
    te_min = min(round(cfg.test_size * n1), round(cfg.test_size * n0))
    if min(n1, n0) < 2 or te_min < MIN_TEST_PER_CLASS:
        reason = (
            f"the held-out split would hold about {te_min} samples of the smaller type "
            f"(n = {n1} + {n0}); the classifier tests need >= {MIN_TEST_PER_CLASS} per type"
        )
        return None, [TestOutcome.skip(t, reason, cfg.alpha) for t in _C2ST_TESTS]
    try:
        res = classifier_two_sample_test(
            design.X,
            design.y,
            test_size=cfg.test_size,
            alpha=cfg.alpha,
            n_permutations=cfg.permutations,
            permutation="half" if int(cfg.permutations) > 0 else "none",
            seed=cfg.seed,
            classifier=cfg.classifier,
            groups=design.groups,
        )
    except Exception as exc:  # noqa: BLE001 - record, never abort the sweep
        return None, [TestOutcome.skip(t, f"{type(exc).__name__}: {exc}", cfg.alpha) for t in _C2ST_TESTS]
    warn += res.warnings
    c2st = res.to_record(null_accuracies=figure_data)
    # The held-out predictions, for paired comparisons between networks on this split
    # (row indices into the input's samples; the sweep turns them into sample ids).
    c2st["held_out"] = {"index": design.rows[res.fit.test_index].tolist(), "y_pred": res.y_pred.tolist()}
    tests = res.outcomes()
    if P_full > 0:
        outcome, part, notes = full_permutation_part(
            design, res.fit.train_index, cfg, P_full, device, executor, observed=res.accuracy
        )
        tests.append(outcome)
        warn += notes
        if part is not None:
            c2st["full_permutation"] = part
    else:
        tests.append(TestOutcome.skip("full_permutation", "full permutations = 0 for this layer", cfg.alpha))
    y_train = design.y[res.fit.train_index]
    n_train = (int((y_train == 0).sum()), int((y_train == 1).sum()))
    tests += _score_tests(res, n_train, cfg, cfg.alpha, rec, figure_data)
    if figure_data:
        rec["figures"] = _figure_data(
            res, design.X, design.columns, design.values.shape[1], design.stat_names, cfg.top_k
        )
    return c2st, tests


def _mmd_part(design: LayerDesign, cfg: BatteryConfig, device: str, warn: list[str]) -> TestOutcome:
    """MMD on all good samples (a seeded subsample per type when large)."""
    n1, n0 = design.counts
    if cfg.mmd_permutations <= 0:
        return TestOutcome.skip("mmd", "mmd_permutations = 0", cfg.alpha)
    if min(n1, n0) < 2:
        return TestOutcome.skip("mmd", f"MMD needs >= 2 samples per type (n = {n1} + {n0})", cfg.alpha)
    try:
        from fovea_ray.stats import _seeding
        from fovea_ray.stats.mmd import mmd_test

        Xm, ym = design.X, design.y
        if max(n1, n0) > cfg.mmd_max_samples:
            rng = _seeding.stream(cfg.seed, _seeding.MMD_PERMUTATION, 2)
            keep = np.concatenate(
                [
                    rng.choice(np.flatnonzero(ym == c), size=min(cfg.mmd_max_samples, m), replace=False)
                    for c, m in ((0, n0), (1, n1))
                ]
            )
            keep.sort()
            Xm, ym = Xm[keep], ym[keep]
            warn.append(f"MMD on a seeded subsample of {cfg.mmd_max_samples} per type")
        return mmd_test(Xm, ym, n_permutations=cfg.mmd_permutations, seed=cfg.seed, alpha=cfg.alpha, device=device)
    except Exception as exc:  # noqa: BLE001
        return TestOutcome.skip("mmd", f"{type(exc).__name__}: {exc}", cfg.alpha)


def _selectivity_part(design: LayerDesign, cfg: BatteryConfig, figure_data: bool, warn: list[str]) -> dict | None:
    """Per-channel Mann-Whitney U with BH FDR: the ``selectivity`` record."""
    n1, n0 = design.counts
    if min(n1, n0) < 2:
        return None
    try:
        from fovea_ray.stats.selectivity import channel_selectivity

        sel = channel_selectivity(design.values, design.y, stat_names=design.stat_names, fdr=cfg.fdr)
    except Exception as exc:  # noqa: BLE001
        warn.append(f"selectivity skipped: {type(exc).__name__}: {exc}")
        return None
    out = {
        "fdr": sel.fdr,
        "test": "two-sided Mann-Whitney U per channel and statistic; BH across channels",
        "auc_meaning": "P(type-1 value > type-0 value); > 0.5 prefers type 1 (sharp)",
        "per_stat": sel.counts,
        "n_selective": sel.n_selective,
        "n_prefer_type1": int(sum(c["n_prefer_type1"] for c in sel.counts.values())),
        "n_prefer_type0": int(sum(c["n_prefer_type0"] for c in sel.counts.values())),
    }
    if figure_data:
        out["channels"] = {
            "auc": sel.auc.tolist(),
            "p": sel.p.tolist(),
            "q": sel.q.tolist(),
            "layout": "[channel][stat]",
        }
    if min(n1, n0) < 10:
        warn.append("per-channel tests with fewer than 10 samples per type have almost no power")
    return out


def full_permutation_part(
    design: LayerDesign,
    train_index: np.ndarray,
    cfg: BatteryConfig,
    n_permutations: int,
    device: str = "cpu",
    executor: Executor | None = None,
    *,
    observed: float | None = None,
    say=None,
) -> tuple[TestOutcome, dict | None, list[str]]:
    """Run the full permutation test on a layer's design; its test record and c2st entry.

    ``observed``: the layer's own held-out accuracy (the one fit every test uses).
    """
    from fovea_ray.stats.permutation import full_permutation_null

    try:
        full = full_permutation_null(
            design.X,
            design.y,
            train_index,
            n_permutations=n_permutations,
            seed=cfg.seed,
            test_size=cfg.test_size,
            classifier=cfg.classifier,
            groups=design.groups,
            device=device,
            precision=cfg.precision,
            executor=executor,
            observed=observed,
            say=say,
        )
    except Exception as exc:  # noqa: BLE001 - record, never abort the sweep
        return TestOutcome.skip("full_permutation", f"{type(exc).__name__}: {exc}", cfg.alpha), None, []
    part = full.to_record(alpha=cfg.alpha, n_requested=n_permutations, precision=cfg.precision)
    return full.outcome(cfg.alpha, cfg.precision), part, list(full.notes)


def add_full_permutation(
    rec: dict[str, Any],
    values,
    y,
    stat_names: Sequence[str],
    cfg: BatteryConfig,
    n_permutations: int,
    *,
    device: str = "cpu",
    executor: Executor | None = None,
    say=None,
) -> dict[str, Any]:
    """Add the full permutation test to a layer record made with ``full_permutations=0``.

    The split is the classifier's own (:func:`fovea_ray.stats.c2st.c2st_split` with the
    same seed) and the observed statistic is the record's accuracy: the layer's one fit.
    Used by the layer sweep, which runs the layers first and then the (itself parallel)
    full permutation of the main layer.
    """
    if rec.get("c2st") is None or n_permutations <= 0:
        return rec
    design = LayerDesign.build(values, y, stat_names)
    train, _ = c2st_split(design.y, cfg.test_size, cfg.seed)
    outcome, part, notes = full_permutation_part(
        design, train, cfg, n_permutations, device, executor, observed=float(rec["c2st"]["accuracy"]), say=say
    )
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
        fr = friedman_score_tests(res.fit.scores_test, res.fit.y_test, alpha=alpha)
        out += [fr["mann_whitney"], fr["kolmogorov_smirnov"]]
    except Exception as exc:  # noqa: BLE001
        out += [
            TestOutcome.skip(n, f"{type(exc).__name__}: {exc}", alpha)
            for n in ("friedman_mann_whitney", "friedman_kolmogorov_smirnov")
        ]
    try:
        out.append(score_normality(res.fit.scores_test, alpha=alpha))
    except Exception as exc:  # noqa: BLE001
        out.append(TestOutcome.skip("dagostino_pearson_normality", f"{type(exc).__name__}: {exc}", alpha))
    try:
        out.append(
            odds_ratio_test(
                res.fit.scores_test,
                res.fit.y_test,
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
            "y": res.fit.y_test.astype(int).tolist(),
            "score": res.fit.scores_test.tolist(),
        }
    return out


def _figure_data(res: C2STResult, X: np.ndarray, names, C: int, stat_names, top_k: int) -> dict[str, Any]:
    fig: dict[str, Any] = {}
    if res.fit.coef is not None and res.fit.coef.size == X.shape[1]:
        S = len(stat_names)
        coef = res.fit.coef.reshape(S, C)  # statistic-major columns
        fig["coefficients"] = {
            "space": "standardized features" if res.classifier.get("name") == "standardized" else "raw features",
            "stat_names": list(stat_names),
            "coef": coef.tolist(),
            "layout": "[stat][channel]",
            "intercept": res.fit.intercept,
        }
        order = np.argsort(-np.abs(res.fit.coef), kind="stable")[:top_k]
        Xte = X[res.fit.test_index]
        fig["top_features"] = {
            "by": "|coefficient|",
            "test_labels": res.fit.y_test.astype(int).tolist(),
            "features": [
                {
                    "rank": i + 1,
                    "channel": int(names[j][0]),
                    "stat": names[j][1],
                    "coef": float(res.fit.coef[j]),
                    "test_values": Xte[:, j].tolist(),
                }
                for i, j in enumerate(order)
            ],
        }
    return fig
