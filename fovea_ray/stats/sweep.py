"""The layer sweep: the test battery on every layer of a store.

Each layer (and the ``controls/pixels`` baseline, the input pixels' own statistics) is
one executor item (a Ray task with :class:`fovea_ray.cluster.Execution`'s Ray executor)
that opens the store itself, reads its layer and runs
:func:`fovea_ray.stats.battery.run_battery` on the samples that are done without error.
The full permutation test, its groups fanned out by the same executor, runs for the main layer on the
driver afterwards. :func:`run_store_tests` assembles the ``results.json`` document.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from fovea_ray.cluster import Execution
from fovea_ray.errors import FoveaRayError, InputError, root_cause
from fovea_ray.names import HF_ENERGY, STUDY_LAYER, canonical_stats
from fovea_ray.stats.battery import BatteryConfig, add_full_permutation, run_battery
from fovea_ray.stats.budget import check_permutation_memory
from fovea_ray.stats.decision import DecisionPlan
from fovea_ray.stats.results import build_results

__all__ = [
    "CONTROLS",
    "STUDY_LAYER",
    "check_stats",
    "choose_main_layer",
    "decision_plan",
    "layer_values",
    "layers_to_test",
    "run_store_tests",
    "sample_summary",
    "used_mask",
]

CONTROLS = "controls/pixels"

#: The note on a store made before chunk checksums: its values are read as they are.
UNVERIFIED = "store: made without chunk checksums, so its values are unverified (damage cannot be detected)"


def choose_main_layer(layers: Sequence[str], requested: str | None = None, default: str | None = None) -> str:
    """``requested`` if given (it must exist); else the network's ``default`` layer (the
    store's ``default_layer`` attribute) if tapped; else the study's layer if tapped; else
    the deepest."""
    if requested:
        if requested not in layers and requested != CONTROLS:
            raise InputError(f"layer {requested!r} is not in the store (layers: {', '.join(layers)})")
        return requested
    if default and default in layers:
        return default
    if STUDY_LAYER in layers:
        return STUDY_LAYER
    if not layers:
        raise InputError("the store holds no layers")
    return layers[-1]


def used_mask(store, samples: Sequence[int] | None = None) -> np.ndarray:
    """The samples the tests use: done without error and, when ``samples`` (manifest
    sample ids) is given, among those. Every id in ``samples`` must be good."""
    good = store.good()
    if samples is None:
        return good
    ids = store.samples["sample"].to_numpy()
    wanted = np.isin(ids, np.asarray(list(samples), dtype=ids.dtype))
    missing = np.setdiff1d(np.asarray(list(samples), dtype=ids.dtype), ids[good])
    if missing.size:
        raise InputError(
            f"{store.path}: {missing.size} of the requested samples are not done without error "
            f"(e.g. sample {int(missing[0])})"
        )
    return good & wanted


def layer_values(
    store, layer: str, stats: Sequence[str] | None, samples: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """``(values (N', C, S), y (N',), stat names, kind)`` over the used samples of ``layer``
    (:func:`used_mask`)."""
    good = used_mask(store, samples)
    y = store.samples["label"].to_numpy()
    if layer == CONTROLS:
        vals = store.controls()
        names = list(store.control_stat_names)
        if stats:
            # --stats applies to the baseline too; hf_energy, the controls' own blur
            # measure with no layer counterpart, always stays.
            keep = [i for i, n in enumerate(names) if n in stats or n == HF_ENERGY]
            vals, names = vals[:, :, keep], [names[i] for i in keep]
        kind = "control"
    else:
        names = list(stats) if stats else store.stat_names(layer)
        try:
            vals = store.activations(layer, stats=names)
        except KeyError as exc:
            raise InputError(f"{store.path}: {exc.args[0] if exc.args else exc}") from None
        kind = "layer"
    return vals[good], y[good].astype(np.int8), names, kind


def _layer_task(
    store_path: str,
    stats,
    cfg: BatteryConfig,
    main: str,
    device: str,
    samples,
    layer: str,
    *,
    storage_options: dict | None = None,
) -> tuple[str, dict[str, Any]]:
    """One layer's battery (an executor item: a Ray task, or called in-process).

    ``storage_options`` travel with the task: a Ray worker may not have the driver's
    environment (``FOVEA_RAY_STORAGE_OPTIONS``).
    """
    from fovea_ray.store import open_store

    store = open_store(store_path, storage_options=storage_options)
    vals, y, names, kind = layer_values(store, layer, stats, samples)
    # The full permutation test runs here on every layer with full_layers = "all" (its groups
    # in this task); with "main", the driver fans the main layer's groups out afterwards.
    full = int(cfg.full_permutations) if cfg.full_layers == "all" and kind == "layer" else 0
    rec = run_battery(
        vals, y, names, cfg, name=layer, kind=kind, full_permutations=full, figure_data=layer == main, device=device
    )
    return layer, rec


def sample_summary(store, samples: Sequence[int] | None = None) -> dict[str, Any]:
    """Counts of the store's samples: used (:func:`used_mask`), per type and per category."""
    df = store.samples
    good = used_mask(store, samples)
    used = df[good]
    per_cat = (
        used.groupby("category_id")["label"]
        .agg(n_type1=lambda s: int((s == 1).sum()), n_type0=lambda s: int((s == 0).sum()))
        .reset_index()
    )
    names = store.attrs.get("categories") or {}
    return {
        "n_total": int(len(df)),
        "n_used": int(good.sum()),
        "n_not_done": int((~df["done"].to_numpy(bool)).sum()),
        "n_error": int((df["done"].to_numpy(bool) & (df["error"].astype(str) != "")).sum()),
        "per_type": {"0": int((used["label"] == 0).sum()), "1": int((used["label"] == 1).sum())},
        "per_category": [
            {
                "category_id": int(r.category_id),
                "category_name": names.get(str(int(r.category_id)), ""),
                "n_type0": int(r.n_type0),
                "n_type1": int(r.n_type1),
            }
            for r in per_cat.itertuples()
        ],
    }


def layers_to_test(store, layers: Sequence[str] | None, all_layers: bool, main: str, controls: bool) -> list[str]:
    """The main layer first, then the requested (or all) layers, then the pixel baseline."""
    all_names = store.layers
    if all_layers:
        todo = list(all_names)
    elif layers:
        missing = [name for name in layers if name not in all_names]
        if missing:
            raise InputError(f"{store.path}: no layer(s) {missing} (layers: {', '.join(all_names)})")
        todo = list(layers)
    else:
        todo = [main]
    if main not in todo:
        todo.insert(0, main)
    return todo + [CONTROLS] if controls else todo


def check_stats(store, todo: Sequence[str], stats: Sequence[str] | None) -> list[str] | None:
    """``stats`` canonicalised (``MEAN`` -> ``mean``), each held by every layer in ``todo``."""
    if not stats:
        return None
    try:
        stats = canonical_stats(stats)
    except ValueError as exc:
        raise InputError(f"--stats: {exc}") from None
    for name in todo:
        if name != CONTROLS:
            have = store.stat_names(name)
            missing = [s for s in stats if s not in have]
            if missing:
                raise InputError(f"{store.path}: layer {name!r} has stats {have}, not {missing}")
    return stats


def run_store_tests(
    store_path: str | os.PathLike,
    *,
    layers: Sequence[str] | None = None,
    all_layers: bool = False,
    main_layer: str | None = None,
    stats: Sequence[str] | None = None,
    config: BatteryConfig | None = None,
    execution: Execution | None = None,
    include_controls: bool = True,
    samples: Sequence[int] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the battery on a store's layers and return the ``results.json`` document.

    Parameters
    ----------
    store_path : str or path
        A fovea-ray store (:func:`fovea_ray.store.open_store`).
    layers : sequence of str, optional
        The layers to test (default: the main layer only, or every layer with ``all_layers``).
    main_layer : str, optional
        The layer with figure data and the full permutation test (default:
        :func:`choose_main_layer`).
    stats : sequence of str, optional
        Statistics to use per channel, any spelling (e.g. ``["mean", "max"]``, the
        study's d = 2C), for every row including the pixel baseline; None: all the store
        holds.
    config : BatteryConfig, optional
        The statistics settings.
    execution : fovea_ray.cluster.Execution, optional
        Where layers and permutation groups run (default: this process, on the CPU).
    include_controls : bool
        Add the ``controls/pixels`` baseline row.
    samples : sequence of int, optional
        Use only these manifest sample ids (each must be done without error): the samples
        several networks' stores share, so that every network is fitted and tested on
        the same split (:mod:`fovea_ray.stats.networks`). Default: every good sample.
    say : callable, optional
        Called with each line of the decision plan and its cost (the terminal).

    Returns
    -------
    dict
        The ``results.json`` document (:mod:`fovea_ray.stats.results`).
    """
    from fovea_ray.store import open_store

    cfg = config or BatteryConfig()
    say = say or _quiet
    run = execution or Execution(use_ray=False)
    run.check_device()
    store = open_store(store_path)
    main = choose_main_layer(store.layers, main_layer, store.attrs.get("default_layer"))
    todo = layers_to_test(store, layers, all_layers, main, include_controls)
    stats = check_stats(store, todo, stats)
    summary = sample_summary(store, samples)
    if summary["n_used"] == 0:
        raise InputError(f"{store.path}: no sample is done without error; run or resume the extraction first")
    plan = decision_plan(cfg, summary, n_layers=sum(name != CONTROLS for name in todo))
    cfg = replace(cfg, permutations=plan.permutations, full_permutations=plan.full_permutations)
    check_permutation_memory(summary["n_used"], cfg)
    for line in plan.lines():
        say(line)
    sample_list = None if samples is None else sorted(int(s) for s in samples)

    executor = run.executor()
    task = partial(
        _layer_task, str(store.path), stats, cfg, main, run.device, sample_list, storage_options=store.storage_options
    )
    t0 = time.perf_counter()
    try:
        records = dict(executor(task, todo))
    except FoveaRayError as exc:  # raised in a Ray task (a damaged chunk): its one line, not Ray's
        cause = root_cause(exc)
        raise type(cause)(str(cause)) from None
    say(f"layers: {len(todo)} batteries in {time.perf_counter() - t0:.1f} s")
    if cfg.full_permutations > 0 and cfg.full_layers == "main":
        vals, y, names, _ = layer_values(store, main, stats, sample_list)
        t0 = time.perf_counter()
        add_full_permutation(
            records[main], vals, y, names, cfg, cfg.full_permutations, device=run.device, executor=executor, say=say
        )
        full = (records[main].get("c2st") or {}).get("full_permutation") or {}
        if full:
            say(f"full permutation on {main}: {full['n_permutations']} refits in {time.perf_counter() - t0:.1f} s")
    attrs = store.attrs
    store_info = {k: attrs.get(k) for k in ("status", "weights_checksum", "config")}
    store_info["verified"] = store.checksummed
    notes = [] if store.checksummed else [UNVERIFIED]
    config_doc = {**cfg.to_dict(), **run.to_record(), "layers": todo, "main_layer": main, "stats": stats}
    used = store.samples[used_mask(store, sample_list)]
    doc = build_results(
        layers=records,
        main_layer=main,
        config=config_doc,
        samples=summary,
        store={"path": str(store.path), **store_info},
        warnings=notes,
        decision_plan=plan.to_record(),
    )
    doc["split"] = held_out_split(doc["layers"], used["sample"].to_numpy(), used["label"].to_numpy(), cfg)
    return doc


def _quiet(line: str) -> None:
    """The default ``say``: nothing (library calls stay silent)."""


def decision_plan(cfg: BatteryConfig, summary: dict[str, Any], *, n_layers: int) -> DecisionPlan:
    """The decisions of a sweep over ``n_layers`` layers of the samples in ``summary``
    (:class:`fovea_ray.stats.decision.DecisionPlan`), before any test runs."""
    per = summary.get("per_type") or {}
    te = min(round(cfg.test_size * int(per.get("0", 0))), round(cfg.test_size * int(per.get("1", 0))))
    return DecisionPlan.make(
        alpha=cfg.alpha,
        n_layers=n_layers,
        test_per_class=te,
        permutations=cfg.permutations,
        full_permutations=cfg.full_permutations,
    )


def held_out_split(records: dict[str, dict], sample_ids: np.ndarray, labels: np.ndarray, cfg: BatteryConfig) -> dict:
    """The held-out split the layers' classifiers were tested on, by sample id.

    Every layer sees the same samples and labels and one seeded stratified split, so
    they share one split, which is returned (its ``sample`` ids and ``label``). Each
    layer record's ``c2st.held_out`` is reduced in place to its ``y_pred`` in the
    split's order. A layer that left samples out (NaN/inf values) was split differently:
    its ``held_out`` keeps its own ``sample`` ids next to ``y_pred``.
    """
    split: list[int] | None = None
    for rec in records.values():
        held = (rec.get("c2st") or {}).get("held_out")
        if held is None:
            continue
        index = [int(i) for i in held["index"]]
        if split is None and rec.get("n_type1", 0) + rec.get("n_type0", 0) == len(sample_ids):
            split = index
        if index == split:
            rec["c2st"]["held_out"] = {"y_pred": held["y_pred"]}
        else:
            rec["c2st"]["held_out"] = {"sample": sample_ids[index].astype(int).tolist(), "y_pred": held["y_pred"]}
    rows = np.asarray(split or [], dtype=np.int64)
    return {
        "seed": cfg.seed,
        "test_size": cfg.test_size,
        "sample": sample_ids[rows].astype(int).tolist(),
        "label": labels[rows].astype(int).tolist(),
    }
