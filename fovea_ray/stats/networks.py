"""Several networks side by side: one manifest, one held-out split, paired comparisons.

A study names several networks (``fovea-ray run --network NAME=MODEL@WEIGHTS``), each
extracted into its own store from the same manifest. :func:`run_network_tests` checks
that the stores share their manifest, keeps the samples done without error in every
store, and runs the battery of :func:`fovea_ray.stats.sweep.run_store_tests` on each, so
every network's classifiers are fitted and tested on the same seeded split. It then
compares each network with each control of the same architecture (every pair when no
network is a control), layer by layer, with :func:`fovea_ray.stats.compare.compare_layers`
on the held-out predictions, and finds each network's merge layer
(:func:`fovea_ray.stats.compare.merge_layer`).

The document it returns is the first network's ``results.json`` with two more parts
(schema in :mod:`fovea_ray.stats.results`): ``networks`` (one record per network: its
store, model, weights, role, layer table and merge layer) and ``comparisons`` (one row
per pair and shared layer: the paired accuracy difference, its interval, McNemar's
exact p-value and its Holm adjustment across the pair's layers), summarised per pair
in ``comparison_summary``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fovea_ray.cluster import Execution
from fovea_ray.errors import InputError
from fovea_ray.stats.battery import BatteryConfig
from fovea_ray.stats.compare import LayerComparison, compare_layers, holm, merge_layer
from fovea_ray.stats.decision import layer_pvalue

__all__ = [
    "NetworkEntry",
    "check_stores",
    "combine_results",
    "comparison_pairs",
    "compare_networks",
    "held_out_predictions",
    "layer_pvalue",
    "plan_of",
    "run_network_tests",
    "separation",
    "shared_samples",
]


@dataclass(frozen=True)
class NetworkEntry:
    """One network of a study: its name, its store and whether it is a control.

    Attributes
    ----------
    name : str
        The network's name (a file name: ``stores/NAME.zarr``).
    store : str
        Its activation store (path or URL).
    control : bool
        A control (random weights, trained without foveation): the other networks are
        compared with it. Without any control, every pair is compared.
    """

    name: str
    store: str
    control: bool = False


def _model_of(config: Mapping[str, Any]) -> str:
    """The architecture a store's network has (``maskrcnn_resnet101_fpn``, ``resnet50``, ...)."""
    from fovea_ray.model.spec import model_from_arch

    if config.get("model"):
        return str(config["model"]).partition("@")[0]
    return model_from_arch(str(config.get("arch", "resnet101")))


def check_stores(entries: Sequence[NetworkEntry]) -> dict[str, Any]:
    """Open every store; one-line errors for repeated names or different manifests.

    Returns
    -------
    dict
        Name -> the open :class:`fovea_ray.store.Store`.
    """
    from fovea_ray.store import open_store

    if not entries:
        raise InputError("no networks to test")
    seen: set[str] = set()
    for e in entries:
        if e.name in seen:
            raise InputError(f"network name {e.name!r} is used twice; give each network its own name")
        seen.add(e.name)
    stores = {e.name: open_store(e.store) for e in entries}
    first = entries[0]
    want = (stores[first.name].attrs.get("config") or {}).get("manifest_checksum")
    for e in entries[1:]:
        got = (stores[e.name].attrs.get("config") or {}).get("manifest_checksum")
        if got != want:
            raise InputError(
                f"{e.store}: made from another manifest than {first.store} (manifest sha256 "
                f"{str(got)[:12]}… vs {str(want)[:12]}…); networks are compared only on the same samples"
            )
    return stores


def shared_samples(stores: Mapping[str, Any]) -> tuple[list[int], int]:
    """The sample ids done without error in every store, and how many others were left out."""
    good = []
    for store in stores.values():
        ids = store.samples["sample"].to_numpy()
        good.append(set(ids[store.good()].tolist()))
    shared = set.intersection(*good)
    left_out = len(set.union(*good) - shared)
    return sorted(int(s) for s in shared), left_out


def comparison_pairs(entries: Sequence[NetworkEntry], models: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(network, control)`` for each control of the same architecture; every pair when no
    network is a control. ``models``: name -> architecture."""
    controls = [e for e in entries if e.control]
    if not controls:
        return [(a.name, b.name) for i, a in enumerate(entries) for b in entries[i + 1 :]]
    return [(a.name, b.name) for a in entries if not a.control for b in controls if models[a.name] == models[b.name]]


def plan_of(doc: Mapping[str, Any]):
    """The document's :class:`fovea_ray.stats.decision.DecisionPlan` (None for documents made before plans)."""
    from fovea_ray.stats.decision import DecisionPlan

    rec = doc.get("decision_plan")
    return DecisionPlan.from_record(rec) if rec else None


def separation(records: Mapping[str, Mapping[str, Any]], *, alpha: float, plan=None) -> dict[str, Any]:
    """Where one network separates the types: its layers' H0 p-values (:func:`layer_pvalue`),
    Benjamini-Hochberg adjusted across the layers, the layers that reject at ``alpha``, and
    the merge layer (:func:`fovea_ray.stats.compare.merge_layer`, the same adjustment).

    ``records``: the results document's layer records (network layers in depth order;
    the pixel control is left out). ``plan``: the document's decision plan; when it says
    the across-layer decision cannot reject (too few permutations for BH), no layer is
    called separating or not: ``decided`` is False and ``undecided`` says why.
    """
    from scipy import stats as sps

    layer_test = plan.layer_test if plan is not None else None
    tested = [(name, layer_pvalue(rec, layer_test)) for name, rec in records.items() if rec.get("kind") == "layer"]
    tested = [(name, p) for name, p in tested if p is not None]
    names, p = [n for n, _ in tested], np.array([p for _, p in tested], dtype=float)
    q = sps.false_discovery_control(p, method="bh") if p.size > 1 else p
    rule = f"BH at {alpha:g} across {len(names)} layers; the layer after the deepest rejection"
    layers = plan.get("layers") if plan is not None else None
    if layers is not None and not layers.decidable:
        return {
            "separating_layers": [],
            "merge_layer": None,
            "merge_rule": rule,
            "n_layers_tested": len(names),
            "decided": False,
            "undecided": layers.reason(),
            "layer_test": layer_test,
            "pvalues": dict(zip(names, p.tolist())),
            "qvalues": dict(zip(names, np.asarray(q).tolist())),
        }
    return {
        "separating_layers": [n for n, qq in zip(names, q) if qq <= alpha],
        "merge_layer": merge_layer(names, p, alpha=alpha) if names else None,
        "merge_rule": rule,
        "n_layers_tested": len(names),
        "decided": True,
        "undecided": "",
        "layer_test": layer_test,
        "pvalues": dict(zip(names, p.tolist())),
        "qvalues": dict(zip(names, np.asarray(q).tolist())),
    }


def held_out_predictions(doc: Mapping[str, Any]) -> tuple[dict[int, int], dict[str, dict[int, int]]]:
    """``(labels, predictions)`` of a results document: held-out label per sample id, and
    per network layer (not the pixel control) the held-out prediction per sample id."""
    split = doc.get("split") or {}
    ids = [int(s) for s in split.get("sample", [])]
    labels = dict(zip(ids, (int(v) for v in split.get("label", []))))
    preds: dict[str, dict[int, int]] = {}
    for name, rec in doc["layers"].items():
        held = (rec.get("c2st") or {}).get("held_out")
        if rec.get("kind") != "layer" or not held:
            continue
        samples = [int(s) for s in held.get("sample", ids)]
        preds[name] = dict(zip(samples, (int(v) for v in held["y_pred"])))
    return labels, preds


def compare_networks(
    docs: Mapping[str, Mapping[str, Any]], pairs: Sequence[tuple[str, str]], *, alpha: float
) -> list[LayerComparison]:
    """Paired comparisons of held-out accuracy for each pair, at every layer both tested.

    Each layer is compared on the held-out samples both networks' classifiers predicted
    (the whole shared split, unless a layer left samples out for NaN values).
    """
    out = []
    for a, b in pairs:
        labels, pred_a = held_out_predictions(docs[a])
        labels_b, pred_b = held_out_predictions(docs[b])
        layers = [name for name in pred_a if name in pred_b]
        if not layers:
            continue
        ys, pa, pb = {}, {}, {}
        for name in layers:
            common = [s for s in pred_a[name] if s in pred_b[name] and s in labels and labels_b.get(s) == labels[s]]
            ys[name] = np.array([labels[s] for s in common], dtype=np.int8)
            pa[name] = np.array([pred_a[name][s] for s in common], dtype=np.int8)
            pb[name] = np.array([pred_b[name][s] for s in common], dtype=np.int8)
        first = layers[0]
        if all(np.array_equal(ys[name], ys[first]) for name in layers):
            out.append(compare_layers(ys[first], pa, pb, network_a=a, network_b=b, layers=layers, alpha=alpha))
            continue
        # Layers held out different samples: compare each on its own, then adjust together.
        per = [
            compare_layers(ys[name], {name: pa[name]}, {name: pb[name]}, network_a=a, network_b=b, alpha=alpha)
            for name in layers
        ]
        results = tuple(c.results[0] for c in per)
        adjusted = holm([r.pvalue for r in results])
        out.append(LayerComparison(a, b, tuple(layers), results, tuple(float(q) for q in adjusted), float(alpha)))
    return out


def _network_record(entry: NetworkEntry, doc: Mapping[str, Any], model: str, alpha: float) -> dict[str, Any]:
    config = (doc.get("store") or {}).get("config") or {}
    return {
        "name": entry.name,
        "store": entry.store,
        "model": model,
        "weights": config.get("weights"),
        "weights_checksum": (doc.get("store") or {}).get("weights_checksum"),
        "seed": config.get("seed"),
        "role": "control" if entry.control else "network",
        "main_layer": doc.get("main_layer"),
        **separation(doc["layers"], alpha=alpha, plan=plan_of(doc)),
        "table": [row for row in doc["table"] if row["kind"] == "layer"],
        "warnings": list(doc.get("warnings", [])),
    }


def combine_results(
    entries: Sequence[NetworkEntry],
    docs: Mapping[str, dict],
    models: Mapping[str, str],
    *,
    alpha: float,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The first network's document plus ``networks``, ``comparisons`` and ``comparison_summary``."""
    from fovea_ray.stats.results import to_jsonable, validate_results

    primary = next((e for e in entries if not e.control), entries[0])
    doc = dict(docs[primary.name])
    pairs = comparison_pairs(entries, models)
    comparisons = compare_networks(docs, pairs, alpha=alpha)
    doc["networks"] = [_network_record(e, docs[e.name], models[e.name], alpha) for e in entries]
    doc["comparisons"] = [row for c in comparisons for row in c.to_records()]
    doc["comparison_summary"] = [
        {
            "network_a": c.network_a,
            "network_b": c.network_b,
            "n_layers": len(c.layers),
            "alpha": c.alpha,
            "adjustment": "holm",
            "different": list(c.different),
            "a_separates_more": list(c.a_separates_more),
            "a_separates_less": list(c.a_separates_less),
            "undecidable": list(c.undecidable),
        }
        for c in comparisons
    ]
    done = {(c.network_a, c.network_b) for c in comparisons}
    skipped = [f"{a} vs {b}" for a, b in pairs if (a, b) not in done]
    if skipped:
        notes = [*notes, f"not compared (no layer has held-out predictions from both): {', '.join(skipped)}"]
    unpaired = [e.name for e in entries if not e.control and not any(e.name in p for p in pairs)]
    doc["warnings"] = list(doc.get("warnings", [])) + list(notes)
    if unpaired and any(e.control for e in entries):
        doc["warnings"].append(f"no control of the same architecture for {', '.join(unpaired)}: not compared")
    doc = to_jsonable(doc)
    validate_results(doc)
    return doc


def run_network_tests(
    entries: Sequence[NetworkEntry],
    *,
    layers: Sequence[str] | None = None,
    all_layers: bool = False,
    main_layer: str | None = None,
    stats: Sequence[str] | None = None,
    config: BatteryConfig | None = None,
    execution: Execution | None = None,
    include_controls: bool = True,
    on_network=None,
    say=None,
) -> dict[str, Any]:
    """Test every network's store on the same samples and split, then compare them.

    Parameters
    ----------
    entries : sequence of NetworkEntry
        The networks; the first that is not a control leads the document (its layers,
        figures and tests are the top level, as for one network).
    layers, all_layers, main_layer, stats, config, execution
        As for :func:`fovea_ray.stats.sweep.run_store_tests`, for every network. A main
        layer a network does not have falls back to that network's default.
    include_controls : bool
        Add the ``controls/pixels`` row (once: the pixel statistics are the same for
        every network, since the stores share the manifest).
    on_network : callable, optional
        Called with each network's name before its tests (progress messages).
    say : callable, optional
        Called with the decision plan's lines and costs (:func:`fovea_ray.stats.sweep.run_store_tests`).

    Returns
    -------
    dict
        The ``results.json`` document with ``networks``, ``comparisons`` and
        ``comparison_summary``.

    Notes
    -----
    The comparisons condition on each network's fitted classifiers and test on the
    held-out samples (:mod:`fovea_ray.stats.compare`, which gives the references).
    """
    from fovea_ray.stats.sweep import run_store_tests

    cfg = config or BatteryConfig()
    stores = check_stores(entries)
    samples, left_out = shared_samples(stores)
    if not samples:
        raise InputError("no sample is done without error in every store; run or resume the extractions first")
    models = {e.name: _model_of(stores[e.name].attrs.get("config") or {}) for e in entries}
    primary = next((e for e in entries if not e.control), entries[0])
    docs = {}
    for e in entries:
        if on_network is not None:
            on_network(e.name)
        own = main_layer if main_layer and main_layer in stores[e.name].layers else None
        docs[e.name] = run_store_tests(
            os.fspath(e.store),
            layers=[name for name in (layers or []) if name in stores[e.name].layers] or None,
            all_layers=all_layers,
            main_layer=own,
            stats=stats,
            config=cfg,
            execution=execution,
            include_controls=include_controls and e.name == primary.name,
            samples=samples,
            say=say,
        )
    notes = [f"{left_out} samples not done without error in every store were left out of every network"]
    notes = notes if left_out else []
    return combine_results(entries, docs, models, alpha=cfg.alpha, notes=notes)
