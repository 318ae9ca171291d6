"""``results.json``: what ``fovea-ray test`` writes and ``fovea-ray report`` reads.

Schema ``fovea-ray.results`` version 1. Strict JSON: every non-finite number (NaN, and
the infinite ``T`` of a perfect classifier) is written as ``null``; the accompanying
p-value tells the direction. Top level::

    schema              "fovea-ray.results"
    schema_version      1
    created             ISO-8601 UTC time
    store               {"path", "status", "weights_checksum", "config"}  (from the store's attrs)
    config              the test settings: layers, main_layer, stats, alpha, test_size,
                        permutations, full_permutations, mmd_permutations,
                        odds_permutations, fdr, seed, classifier, full_layers, precision, and
                        where it ran: backend (ray | local), address, device
    versions            {"fovea_ray", "python", "numpy", "scipy", "sklearn", "torch", "ray"}
    samples             {"n_total", "n_used", "n_not_done", "n_error",
                         "per_type": {"0": n, "1": n},
                         "per_category": [{"category_id", "category_name", "n_type0", "n_type1"}, ...]}
    main_layer          name of the layer with figure data (a key of "layers")
    layers              {name: LAYER RECORD}, tapped layers in depth order, then
                        "controls/pixels" (kind "control": the input pixels' statistics)
    table               one row per layer record (see below), same order
    tests               every test of every layer: {"layer", "name", "statistic",
                        "pvalue", "alpha", "reject", "alternative", "skipped", "reason",
                        "details"}
    warnings            ["<layer>: <note>", ...]  (small samples, convergence, skips)
    split               the held-out split every layer's classifier was tested on:
                        {"seed", "test_size", "sample": [sample ids], "label": [0/1]}
    decision_plan       made before any test ran (:mod:`fovea_ray.stats.decision`):
                        {"alpha", "n_layers" (m), "layer_test" (the test deciding every
                        layer: kim_asymptotic | kim_half_permutation), "permutations",
                        "full_permutations" (P as chosen or given), "auto" {which P the
                        rule chose}, "asymptotic_reliable", "rule",
                        "decisions": [{"name" (layer | layers | merge_layer |
                        full_permutation), "test", "n_permutations", "smallest_p",
                        "threshold" (alpha/m), "adjustment" (none | bh), "m",
                        "decidable", "needs_permutations", "reason"}, ...]}

With several networks (:mod:`fovea_ray.stats.networks`; ``fovea-ray run --network``,
``fovea-ray test --store NAME=STORE``) the top level is the first network's, and three
more keys follow::

    networks            [{"name", "store", "model", "weights", "weights_checksum", "seed",
                          "role" ("network" | "control"), "main_layer", "merge_layer",
                          "merge_rule", "separating_layers", "decided" (false when the
                          plan says BH across layers cannot reject), "undecided" (why),
                          "layer_test", "pvalues" and "qvalues" ({layer: p}, BH-adjusted),
                          "table": [TABLE ROW, ...], "warnings"}, ...]
    comparisons         one row per compared pair and shared layer: {"network_a",
                        "network_b", "layer", "accuracy_difference" (a - b), "pvalue"
                        (McNemar exact), "pvalue_holm" (across the pair's layers),
                        "different", "accuracy_a", "accuracy_b", "ci_low", "ci_high"
                        (Newcombe paired interval), "confidence_level", "n_test",
                        "both_correct", "only_a_correct", "only_b_correct",
                        "neither_correct", "smallest_p" (McNemar's on this many
                        discordant samples), "decidable" (smallest_p <= alpha/m)}
    comparison_summary  per pair: {"network_a", "network_b", "n_layers", "alpha",
                        "adjustment", "different", "a_separates_more",
                        "a_separates_less", "undecidable"} (layer lists; undecidable:
                        too few discordant samples for Holm's alpha/m)

LAYER RECORD (:func:`fovea_ray.stats.battery.run_battery`)::

    layer, kind ("layer" | "control"), stat_names, n, n_type1, n_type0, channels, d
    c2st        null if skipped, else {
                  accuracy, accuracy_ci [lo, hi], accuracy_ci_method,
                  confusion [[TN, FP], [FN, TP]]   (confusion[true][predicted], class order 0, 1),
                  confusion_orientation, e0, e1, te0, te1,
                  statistic (Kim's T), p_asymptotic, reject_asymptotic,
                  asymptotic_reliable, min_test_per_class (kim_min_test_per_class(alpha)),
                  deciding_test, classifier ("standardized" | "unscaled" | "study" | a class
                  name), classifier_spec {name, model, C, preprocessing, solver},
                  converged (relative gradient norm <= 1e-6: the optimum was reached),
                  optimality (that norm), n_iter, n_train, n_test,
                  held_out {y_pred: [0/1 in the order of "split"]} (and its own "sample"
                           ids when the layer left samples with NaN values out),
                  half_permutation {n_permutations, p, reject, rule, k, threshold,
                                    observed_accuracy, null_accuracies (main layer only, else null)},
                  full_permutation {n_permutations (as used), n_permutations_requested,
                                    n_groups, group_size, p, reject, observed_accuracy
                                    (= accuracy: the layer's one fit), observed_refit_accuracy
                                    (the true labels refitted like the null, a check),
                                    classifier, null_accuracies, solver, precision, backend,
                                    converged_fraction, wall_s}   (when run)}
    selectivity null if skipped, else {fdr, test, auc_meaning,
                  per_stat {stat: {n_channels, n_selective, n_prefer_type1, n_prefer_type0}},
                  n_selective, n_prefer_type1, n_prefer_type0,
                  channels {auc, p, q: [channel][stat], layout}   (main layer only)}
    scores      (main layer) {kind, y: [...], score: [...]}: held-out labels and
                classifier decision values (log-odds), for the score histogram + normal fit
    figures     (main layer) {
                  coefficients {stat_names, coef: [stat][channel], layout, intercept},
                  top_features {by, test_labels: [...], features: [{rank, channel, stat,
                                coef, test_values: [...]}, ...]}   (top 9 by |coef|)}
    tests       this layer's tests (names: kim_asymptotic, kim_half_permutation,
                full_permutation, friedman_mann_whitney, friedman_kolmogorov_smirnov,
                dagostino_pearson_normality, cai_odds_ratio, mmd)
    warnings, wall_s

TABLE ROW::

    layer, kind, n, d, accuracy, accuracy_ci_low, accuracy_ci_high, statistic,
    p_asymptotic, p_half_permutation, p_full_permutation, p_layer (the deciding test's,
    as the plan's layer_test says), classifier, n_selective, n_prefer_type1,
    n_prefer_type0, p_mmd
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fovea_ray.errors import InputError
from fovea_ray.stats.decision import layer_pvalue

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "build_results",
    "read_results",
    "table_row",
    "validate_results",
    "versions",
    "write_results",
]

SCHEMA = "fovea-ray.results"
SCHEMA_VERSION = 1

_TOP_KEYS = {
    "schema": str,
    "schema_version": int,
    "created": str,
    "store": dict,
    "config": dict,
    "versions": dict,
    "samples": dict,
    "main_layer": (str, type(None)),
    "layers": dict,
    "table": list,
    "tests": list,
    "warnings": list,
}
_LAYER_KEYS = {"layer": str, "kind": str, "n": int, "d": int, "tests": list, "warnings": list}
_ROW_KEYS = (
    "layer",
    "kind",
    "n",
    "d",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "statistic",
    "p_asymptotic",
    "p_half_permutation",
    "p_full_permutation",
    "n_selective",
    "n_prefer_type1",
    "n_prefer_type0",
    "p_mmd",
)


def to_jsonable(obj: Any) -> Any:
    """numpy -> Python, tuples -> lists, non-finite floats -> None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def versions() -> dict[str, str]:
    """Versions of fovea-ray and the libraries the numbers depend on."""
    import scipy
    import sklearn

    from fovea_ray import __version__

    out = {
        "fovea_ray": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
    }
    for mod in ("torch", "ray"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional at read time
            out[mod] = "unavailable"
    return out


def table_row(rec: dict[str, Any], layer_test: str | None = None) -> dict[str, Any]:
    """The layer table's row for one layer record; ``p_layer`` is the p-value of the test
    that decides every layer (the decision plan's ``layer_test``)."""
    c = rec.get("c2st") or {}
    half = c.get("half_permutation") or {}
    full = c.get("full_permutation") or {}
    sel = rec.get("selectivity") or {}
    mmd = next((t for t in rec.get("tests", []) if t["name"] == "mmd" and not t["skipped"]), None)
    ci = c.get("accuracy_ci") or [None, None]
    return {
        "layer": rec["layer"],
        "kind": rec["kind"],
        "n": rec["n"],
        "d": rec["d"],
        "accuracy": c.get("accuracy"),
        "accuracy_ci_low": ci[0],
        "accuracy_ci_high": ci[1],
        "statistic": c.get("statistic"),
        "p_asymptotic": c.get("p_asymptotic"),
        "p_half_permutation": half.get("p"),
        "p_full_permutation": full.get("p"),
        "p_layer": layer_pvalue(rec, layer_test),
        "classifier": c.get("classifier"),
        "n_selective": sel.get("n_selective"),
        "n_prefer_type1": sel.get("n_prefer_type1"),
        "n_prefer_type0": sel.get("n_prefer_type0"),
        "p_mmd": None if mmd is None else mmd["pvalue"],
    }


def build_results(
    *,
    layers: dict[str, dict],
    main_layer: str | None,
    config: dict,
    samples: dict,
    store: dict,
    warnings: list[str] | None = None,
    decision_plan: dict | None = None,
) -> dict[str, Any]:
    """Assemble (and validate) the results document from the sweep's layer records.

    ``decision_plan``: :meth:`fovea_ray.stats.decision.DecisionPlan.to_record`; its
    ``layer_test`` gives each table row's ``p_layer``."""
    tests, warns = [], list(warnings or [])
    for name, rec in layers.items():
        for t in rec.get("tests", []):
            tests.append({"layer": name, **t})
        warns += [f"{name}: {w}" for w in rec.get("warnings", [])]
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "store": store,
        "config": config,
        "versions": versions(),
        "samples": samples,
        "main_layer": main_layer,
        "layers": layers,
        "table": [table_row(rec, (decision_plan or {}).get("layer_test")) for rec in layers.values()],
        "tests": tests,
        "warnings": warns,
    }
    if decision_plan is not None:
        doc["decision_plan"] = decision_plan
    doc = to_jsonable(doc)
    validate_results(doc)
    return doc


def validate_results(doc: Any, *, source: str = "results") -> None:
    """Check the document's structure; InputError naming ``source`` and the problem."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}: not a fovea-ray results document (top level is {type(doc).__name__})")
    if doc.get("schema") != SCHEMA:
        raise InputError(
            f"{source}: not a fovea-ray results document (schema {doc.get('schema')!r}, expected {SCHEMA!r})"
        )
    if isinstance(doc.get("schema_version"), int) and doc["schema_version"] > SCHEMA_VERSION:
        raise InputError(
            f"{source}: results schema version {doc['schema_version']} is newer than this "
            f"fovea-ray reads ({SCHEMA_VERSION}); upgrade fovea-ray"
        )
    for key, typ in _TOP_KEYS.items():
        if key not in doc:
            raise InputError(f"{source}: missing key {key!r}")
        if not isinstance(doc[key], typ):
            raise InputError(f"{source}: {key!r} has type {type(doc[key]).__name__}")
    if doc["main_layer"] is not None and doc["main_layer"] not in doc["layers"]:
        raise InputError(f"{source}: main_layer {doc['main_layer']!r} is not among the layers")
    for name, rec in doc["layers"].items():
        for key, typ in _LAYER_KEYS.items():
            if not isinstance(rec.get(key), typ):
                raise InputError(f"{source}: layer {name!r} lacks {key!r} (or it has the wrong type)")
        c = rec.get("c2st")
        if c is not None:
            cm = c.get("confusion")
            if not (isinstance(cm, list) and len(cm) == 2 and all(isinstance(r, list) and len(r) == 2 for r in cm)):
                raise InputError(f"{source}: layer {name!r} confusion is not 2 x 2")
    for row in doc["table"]:
        missing = [k for k in _ROW_KEYS if k not in row]
        if missing:
            raise InputError(f"{source}: a table row lacks {missing}")
    for t in doc["tests"]:
        for k in ("layer", "name", "statistic", "pvalue", "reject", "skipped"):
            if k not in t:
                raise InputError(f"{source}: a test record lacks {k!r}")
    plan = doc.get("decision_plan")
    if plan is not None and not (isinstance(plan, dict) and isinstance(plan.get("decisions"), list)):
        raise InputError(f"{source}: 'decision_plan' lacks its 'decisions' list")
    _validate_networks(doc, source)


_NETWORK_KEYS = {"name": str, "store": str, "model": str, "role": str, "table": list}
_COMPARISON_KEYS = ("network_a", "network_b", "layer", "accuracy_difference", "pvalue", "pvalue_holm", "different")
_SUMMARY_KEYS = ("network_a", "network_b", "different", "a_separates_more", "a_separates_less")


def _validate_networks(doc: dict, source: str) -> None:
    """The optional several-network parts: ``split``, ``networks``, ``comparisons``."""
    split = doc.get("split")
    if split is not None:
        if not (isinstance(split, dict) and isinstance(split.get("sample"), list)):
            raise InputError(f"{source}: 'split' lacks its 'sample' list")
        if len(split.get("label", [])) != len(split["sample"]):
            raise InputError(f"{source}: 'split' has {len(split['sample'])} samples but not as many labels")
    if "networks" not in doc and "comparisons" not in doc:
        return
    for key in ("networks", "comparisons", "comparison_summary"):
        if not isinstance(doc.get(key), list):
            raise InputError(f"{source}: {key!r} is missing or not a list")
    names = set()
    for net in doc["networks"]:
        for key, typ in _NETWORK_KEYS.items():
            if not isinstance(net.get(key), typ):
                raise InputError(f"{source}: a network record lacks {key!r} (or it has the wrong type)")
        if net["role"] not in ("network", "control"):
            raise InputError(f"{source}: network {net['name']!r} has role {net['role']!r}")
        names.add(net["name"])
    for row in doc["comparisons"] + doc["comparison_summary"]:
        keys = _COMPARISON_KEYS if "layer" in row else _SUMMARY_KEYS
        missing = [k for k in keys if k not in row]
        if missing:
            raise InputError(f"{source}: a comparison record lacks {missing}")
        unknown = {row["network_a"], row["network_b"]} - names
        if unknown:
            raise InputError(f"{source}: a comparison names unknown networks {sorted(unknown)}")


def write_results(doc: dict[str, Any], path: str | os.PathLike) -> Path | str:
    """Validate and write ``doc`` as strict JSON to a local path (atomically) or an fsspec URL.

    Returns a :class:`~pathlib.Path` for a local file, the URL string otherwise.
    """
    from fovea_ray import io as fio

    name = os.fspath(path)
    validate_results(doc, source=name)
    out = fio.write_text(name, json.dumps(to_jsonable(doc), allow_nan=False, indent=1))
    return out if fio.is_url(out) else Path(out)


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a results file (path or URL); InputError naming the file otherwise."""
    from fovea_ray import io as fio

    path = os.fspath(path)
    try:
        raw = fio.read_bytes(path)
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(f"{path}: no such results file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    validate_results(doc, source=str(path))
    return doc
