"""From a results document to figures and the HTML report.

The sections follow the study (Gizdov & Akhtari 2023): the classifier two-sample test on
the main layer with its coefficients (fig. 6), top features (fig. 7), permutation null
(fig. 8) and score distribution (fig. 9), then what it left as future work: the layer
sweep with the pixel-statistics control, per-channel selectivity, and the other tests.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from fovea_ray.report import figures as F
from fovea_ray.report.html import Figure, Section, Table, render_html, write_html
from fovea_ray.report.networks import answer_paragraphs, networks_section

TEST_TITLES = {
    "kim_asymptotic": "Kim et al. asymptotic Z (T < −z_α)",
    "kim_half_permutation": "Half permutation (test labels permuted, model kept)",
    "full_permutation": "Full permutation (labels permuted, model refit)",
    "friedman_mann_whitney": "Friedman (2003) scores: Mann–Whitney U",
    "friedman_kolmogorov_smirnov": "Friedman (2003) scores: Kolmogorov–Smirnov",
    "dagostino_pearson_normality": "D'Agostino–Pearson normality of the scores",
    "cai_odds_ratio": "Cai, Goggin & Jiang (2020) odds-ratio test",
    "mmd": "MMD, Gaussian kernel (Gretton et al. 2012)",
}

RANDOM_WEIGHTS_NOTICE = (
    "These activations come from a network with RANDOM weights: a pipeline check, not a finding "
    "about a trained detector."
)


def _short(layer: str) -> str:
    return layer.replace("backbone.body.", "")


def _nl10(p: Any) -> float:
    if p is None:
        return math.nan
    return -math.log10(max(float(p), 1e-300))


def _fmt_p(p: Any) -> Any:
    return "–" if p is None else float(p)


def _full_observed_note(c: dict, full: dict) -> str:
    """The full test's observed statistic is the layer's own fit; say so, and flag a refit that disagreed."""
    obs, refit = full.get("observed_accuracy"), full.get("observed_refit_accuracy")
    text = " Its observed accuracy is the layer's classifier above: one fit serves every test of the layer."
    if obs is not None and refit is not None and abs(float(obs) - float(refit)) > 1e-12:
        text += (
            f" The null's refit of the true labels scored {float(refit):.3f}: the two fits of one objective "
            "disagree on a held-out sample at the decision boundary."
        )
    return text


def classifier_sentence(c: dict) -> str:
    """Which classifier decided, how it was fitted, and whether it reached its optimum."""
    spec = c.get("classifier_spec") or {}
    name = spec.get("name") or c.get("classifier", "")
    how = {
        "standardized": "the standardized classifier (features centred and scaled per channel with the training "
        "split's statistics, in every permutation refit too; L2 logistic regression, C = 1, fitted to its optimum)",
        "unscaled": "the study's objective on unscaled features, fitted to its optimum",
        "study": "the study's own classifier (unscaled features, C = 1, lbfgs stopped at 500 iterations)",
    }.get(name, f"{name} (a user's classifier)")
    text = f"The classifier that decided is {how}."
    opt, gap = c.get("optimality"), c.get("objective_gap")
    if c.get("converged") is False:
        how = (
            f"its objective is {gap:.2g} above the optimum an independent solver finds"
            if gap is not None
            else f"relative gradient norm {opt:.2g}"
        )
        text += f" This fit did not reach its optimum ({how}); its predictions are reported as they are."
    elif c.get("converged") and opt is not None:
        text += f" It reached its optimum (relative gradient norm {opt:.1g})."
    return text


def _main_figures(doc: dict, rec: dict, alpha: float) -> list[Figure]:
    figs: list[Figure] = []
    c = rec.get("c2st") or {}
    fd = rec.get("figures") or {}
    coef = fd.get("coefficients")
    if coef:
        figs.append(
            Figure(
                F.coefficients_by_stat(dict(zip(coef["stat_names"], coef["coef"]))),
                "Logistic-regression coefficients per channel for each statistic's columns "
                f"(the study's fig. 6: mean versus max columns), on the {coef.get('space', 'raw features')}.",
                "coefficients",
            )
        )
    top = fd.get("top_features")
    if top and top.get("features"):
        y = np.asarray(top["test_labels"], int)
        feats = []
        for f in top["features"]:
            v = np.asarray(f["test_values"], float)
            feats.append((f"#{f['rank']} ch {f['channel']} {f['stat']} (β={f['coef']:.3g})", v[y == 0], v[y == 1]))
        figs.append(
            Figure(
                F.top_feature_histograms(feats),
                "The 9 features with the largest |coefficient|, per-class histograms on the held-out "
                "split (the study's fig. 7).",
                "top_features",
            )
        )
    half = c.get("half_permutation") or {}
    if half.get("null_accuracies"):
        figs.append(
            Figure(
                F.permutation_null(
                    half["null_accuracies"], half["observed_accuracy"], label="Half permutation", alpha=alpha
                ),
                f"Half-permutation null: P = {half['n_permutations']} accuracies of the fitted "
                f"classifier on permuted held-out labels; p = {half['p']:.4g} (the study's fig. 8).",
                "half_permutation",
            )
        )
    full = c.get("full_permutation") or {}
    if full.get("null_accuracies"):
        figs.append(
            Figure(
                F.permutation_null(
                    full["null_accuracies"], full["observed_accuracy"], label="Full permutation", alpha=alpha
                ),
                f"Full-permutation null: P = {full['n_permutations']} refits on permuted labels "
                f"({full.get('solver', '')}); p = {full['p']:.4g}.{_full_observed_note(c, full)}",
                "full_permutation",
            )
        )
    sc = rec.get("scores")
    if sc and sc.get("score"):
        norm = next(
            (t for t in rec.get("tests", []) if t["name"] == "dagostino_pearson_normality" and not t["skipped"]), None
        )
        figs.append(
            Figure(
                F.score_distribution(
                    sc["score"],
                    sc["y"],
                    k2=None if norm is None else norm["statistic"],
                    p=None if norm is None else norm["pvalue"],
                ),
                "Out-of-sample classifier scores by class with a normal fit, and a normal Q-Q plot "
                "with the D'Agostino–Pearson statistic (the study's fig. 9).",
                "scores",
            )
        )
    if c.get("confusion"):
        figs.append(
            Figure(
                F.confusion_matrix(c["confusion"]),
                "Confusion matrix on the held-out split, rows = true class, columns = predicted.",
                "confusion",
            )
        )
    sel = rec.get("selectivity") or {}
    ch = sel.get("channels")
    if ch and ch.get("auc"):
        per = sel["per_stat"]
        names = list(per)
        figs.append(
            Figure(
                F.selectivity(
                    np.asarray(ch["auc"], float),
                    names,
                    [per[n]["n_prefer_type1"] for n in names],
                    [per[n]["n_prefer_type0"] for n in names],
                    layer=_short(rec["layer"]),
                ),
                f"Per-channel selectivity: AUC of each channel's statistic (> 0.5: higher for sharp, "
                f"type-1 objects) and the channels significant after Benjamini–Hochberg at "
                f"q < {sel.get('fdr')}.",
                "selectivity",
            )
        )
    return figs


def _layer_section(doc: dict, alpha: float) -> Section:
    rows = doc.get("table", [])
    sec = Section("Along the depth of the network" + _network_lead(doc))
    layer_rows = [r for r in rows if r["kind"] == "layer" and r.get("accuracy") is not None]
    ctrl = next((r for r in rows if r["kind"] == "control" and r.get("accuracy") is not None), None)
    if len(layer_rows) >= 2:
        sec.blocks.append(
            Figure(
                F.layer_curve(
                    [r["layer"] for r in layer_rows],
                    [r["accuracy"] for r in layer_rows],
                    [r["accuracy_ci_low"] for r in layer_rows],
                    [r["accuracy_ci_high"] for r in layer_rows],
                    [_nl10(_p_layer(r)) for r in layer_rows],
                    control=None
                    if ctrl is None
                    else (
                        ctrl["accuracy"],
                        ctrl["accuracy_ci_low"],
                        ctrl["accuracy_ci_high"],
                        _nl10(_p_layer(ctrl)),
                    ),
                    alpha=alpha,
                    threshold=_bh_threshold(doc, alpha),
                ),
                "Held-out accuracy (95% Clopper–Pearson interval) and −log10 of the p-value of the test that decides "
                f"each layer ({_layer_test_words(doc)}) per layer, in network depth order; the dashed line is the "
                "smallest threshold Benjamini–Hochberg across the layers applies. The band is the classifier on the "
                "input's pixel statistics (the control).",
                "layers",
            )
        )
    else:
        sec.paragraphs.append("Only one layer was tested; run `fovea-ray test --all-layers` for the depth curve.")
    sec.blocks.append(
        Table(
            [
                "layer",
                "n",
                "d",
                "accuracy",
                "95% CI",
                "T",
                "p asymptotic",
                "p half perm.",
                "p full perm.",
                "selective ch.",
                "prefer type 1",
                "prefer type 0",
                "p MMD",
            ],
            [
                [
                    _short(r["layer"]) + (" (control)" if r["kind"] == "control" else ""),
                    r["n"],
                    r["d"],
                    "–" if r["accuracy"] is None else r["accuracy"],
                    "–" if r["accuracy_ci_low"] is None else f"{r['accuracy_ci_low']:.3f}–{r['accuracy_ci_high']:.3f}",
                    "–" if r["statistic"] is None else r["statistic"],
                    _fmt_p(r["p_asymptotic"]),
                    _fmt_p(r["p_half_permutation"]),
                    _fmt_p(r["p_full_permutation"]),
                    "–" if r["n_selective"] is None else r["n_selective"],
                    "–" if r["n_prefer_type1"] is None else r["n_prefer_type1"],
                    "–" if r["n_prefer_type0"] is None else r["n_prefer_type0"],
                    _fmt_p(r["p_mmd"]),
                ]
                for r in rows
            ],
            caption=f"One row per tapped layer{_network_lead(doc)}, then the pixel-statistics control.",
            left=["layer"],
        )
    )
    return sec


def _p_layer(row: dict):
    """The p-value of the test that decides the layer (older documents: the asymptotic one)."""
    return row.get("p_layer", row.get("p_asymptotic")) if "p_layer" in row else row.get("p_asymptotic")


def _layer_test_words(doc: dict) -> str:
    test = (doc.get("decision_plan") or {}).get("layer_test")
    return {"kim_asymptotic": "Kim's asymptotic test", "kim_half_permutation": "the half permutation test"}.get(
        test, "Kim's asymptotic test"
    )


def _bh_threshold(doc: dict, alpha: float) -> float | None:
    plan = doc.get("decision_plan") or {}
    m = plan.get("n_layers")
    return alpha / m if m else None


def _plan_paragraph(doc: dict, alpha: float) -> str:
    """The decision rule as it was applied: which test, which P, and what the multiplicity needs."""
    plan = doc.get("decision_plan")
    if not plan:
        return ""
    d = {x["name"]: x for x in plan.get("decisions", [])}
    layers = d.get("layers") or {}
    test = _layer_test_words(doc)
    text = f"Each layer is decided by {test}"
    if plan.get("layer_test") == "kim_half_permutation":
        auto = ", chosen by the rule" if (plan.get("auto") or {}).get("permutations") else ""
        text += f" with P = {plan['permutations']}{auto}"
        if not plan.get("asymptotic_reliable", True):
            text += " (the held-out split is too small to trust the asymptotic test's tail that far)"
    text += (
        f". Benjamini–Hochberg across the {plan['n_layers']} layers at α = {alpha:g} rejects only p-values "
        f"≤ {layers.get('threshold', alpha):.2g}; the smallest attainable is {layers.get('smallest_p', 0):.2g}, "
        + ("so every layer could be called separating." if layers.get("decidable", True) else layers.get("reason", ""))
    )
    full = d.get("full_permutation")
    if full:
        where = "every layer" if (doc.get("config") or {}).get("full_layers") == "all" else "the main layer"
        text += (
            f" The full permutation test (P = {full['n_permutations']}, on {where}) decides its layer alone at "
            f"α = {alpha:g}" + (": it can reject." if full.get("decidable") else f": {full.get('reason')}.")
        )
    return text


def _summary_section(doc: dict, alpha: float) -> Section:
    s = doc.get("samples", {})
    sec = Section("Summary")
    per = s.get("per_type", {})
    sec.paragraphs.append(
        f"{s.get('n_used', '?')} samples used ({per.get('1', '?')} type 1: object at the fixation, sharp; "
        f"{per.get('0', '?')} type 0: object in the periphery, blurred). "
        f"{s.get('n_error', 0)} failed extraction and {s.get('n_not_done', 0)} were not done. "
        f"Decisions at α = {alpha}."
    )
    plan_text = _plan_paragraph(doc, alpha)
    if plan_text:
        sec.paragraphs.append(plan_text)
    main = doc.get("main_layer")
    tests = [t for t in doc.get("tests", []) if t["layer"] == main]
    c2st = (doc.get("layers", {}).get(main) or {}).get("c2st") or {}
    small_n = _small_n_decision(c2st, alpha) if c2st else ""
    if small_n:
        sec.warnings.append(small_n)
    sec.blocks.append(
        Table(
            ["test", "statistic", "p-value", "decision"],
            [
                [
                    TEST_TITLES.get(t["name"], t["name"]),
                    "–" if t["statistic"] is None or t["skipped"] else t["statistic"],
                    "–" if t["pvalue"] is None or t["skipped"] else t["pvalue"],
                    _decision(t)
                    + ("; unreliable at this n, not the decision" if small_n and t["name"] == "kim_asymptotic" else ""),
                ]
                for t in tests
            ],
            caption=f"Tests on the main layer, {main}. For the D'Agostino–Pearson row, H0 is normality of the scores.",
            left=["test", "decision"],
        )
    )
    cats = s.get("per_category", [])
    if cats:
        sec.blocks.append(
            Table(
                ["category", "type 1", "type 0"],
                [[_category(c), c["n_type1"], c["n_type0"]] for c in cats],
                caption="Samples used per category and type (the design balances them).",
                left=["category"],
            )
        )
    return sec


def _category(c: dict) -> str:
    """A category's name (its id when the store predates names)."""
    name = c.get("category_name")
    return f"{name} ({c['category_id']})" if name else f"id {c['category_id']}"


def _network_lead(doc: dict) -> str:
    """`` (network NAME)`` when the document holds several networks: the top level is the first."""
    nets = doc.get("networks") or []
    lead = next((n for n in nets if n["role"] == "network"), nets[0] if nets else None)
    return f" (network {lead['name']})" if lead else ""


def _decision(t: dict) -> str:
    if t["skipped"]:
        return "skipped: " + str(t.get("reason", ""))
    if t["name"] == "dagostino_pearson_normality":
        return "scores not normal" if t["reject"] else "normality not rejected"
    return "reject H0: P0 = P1" if t["reject"] else "do not reject H0"


#: The words that mark the classifier test's small-held-out-size note (fovea_ray.stats.c2st).
_SMALL_N_NOTE = "held-out samples of class 0 and 1: at alpha"


def _small_n_decision(c: dict, alpha: float) -> str:
    """Where Kim's asymptotic test is unreliable at this held-out size, the sentence that
    moves the decision to the permutation test (:func:`fovea_ray.stats.kim_min_test_per_class`)."""
    if c.get("asymptotic_reliable", True):
        return ""
    head = (
        f"Only {c['te0']} + {c['te1']} samples are held out per class; at α = {alpha:g} Kim's asymptotic "
        f"test needs ≥ {c.get('min_test_per_class')} per class and rejects too often below that."
    )
    half = c.get("half_permutation") or {}
    if half.get("p") is None:
        return head + " No half permutation test ran, so the layer is not decided."
    verdict = "reject H0: P0 = P1" if half["p"] <= alpha else "do not reject H0"
    return f"{head} The layer is decided by the half permutation test: p = {half['p']:.3g}, {verdict}."


def group_warnings(warnings: list[str]) -> list[str]:
    """Collapse ``"<layer>: <note>"`` warnings that repeat across layers into one line each."""
    import re

    by_note: dict[str, list[str]] = {}
    for w in warnings:
        layer, sep, note = w.partition(": ")
        if not sep or " " in layer:
            layer, note = "", w
        # Sample-size notes differ only in wording between tests: one line is enough.
        key = re.sub(r"\s+", " ", note).strip()
        by_note.setdefault(key, [])
        if layer and layer not in by_note[key]:
            by_note[key].append(layer)
    out = []
    for note, layers in by_note.items():
        if not layers:
            out.append(note)
        elif len(layers) <= 2:
            out.append(f"{', '.join(_short(name) for name in layers)}: {note}")
        else:
            out.append(f"{note} ({len(layers)} layers, e.g. {_short(layers[0])})")
    return out


def _is_random_weights(doc: dict) -> bool:
    cfg = (doc.get("store") or {}).get("config") or {}
    return str(cfg.get("weights", "")).lower() in ("random", "none")


def render_report(
    results: str | Path | dict, out: str | Path | None = None, *, notice: str = "", pairs_png: str | Path | None = None
) -> Path | str:
    """Write ``OUT/figures/*.png`` and ``OUT/report.html`` from a results document; return the HTML path.

    Parameters
    ----------
    results : str, Path or dict
        a ``results.json`` path or the loaded document.
    out : str, Path or None, optional
        output folder (default: the results file's folder).
    notice : str, optional
        a banner shown at the top (the demo says it is not a finding).
    pairs_png : str, Path or None, optional
        example type-1/type-0 input pairs (default: ``OUT/figures/input_pairs.png``
        when present).
    """
    from fovea_ray import io as fio
    from fovea_ray.stats.results import read_results

    # Paths stay strings: ``out`` may be an fsspec URL (s3://...), which Path would mangle.
    if isinstance(results, dict):
        doc = results
        out = os.fspath(out or ".")
    else:
        doc = read_results(results)
        out = os.fspath(out) if out is not None else fio.parent(results)
    figdir = fio.join(out, "figures")
    alpha = float(doc.get("config", {}).get("alpha", 0.01))
    main = doc.get("main_layer")
    rec = doc.get("layers", {}).get(main, {}) if main else {}

    banner = notice or (RANDOM_WEIGHTS_NOTICE if _is_random_weights(doc) else "")
    sections = [_summary_section(doc, alpha)]
    answer = Section("The answer", paragraphs=answer_paragraphs(doc, alpha))
    raw = list(doc.get("warnings", []))
    if _small_n_decision(rec.get("c2st") or {}, alpha):
        # The summary already says it, with the decision: one box, not a second grouped note.
        small = [w for w in raw if _SMALL_N_NOTE in w]
        raw = [w for w in raw if _SMALL_N_NOTE not in w]
        if len(small) > 1:
            sections[0].warnings[0] += f" The same held-out sizes hold at all {len(small)} layers tested."
    warnings = group_warnings(raw)
    sections[0].warnings.extend(warnings[:12])
    if len(warnings) > 12:
        sections[0].warnings.append(f"... and {len(warnings) - 12} more notes in results.json")

    sections.insert(0, answer)
    side_by_side = networks_section(doc, alpha)
    if side_by_side is not None:
        sections.insert(1, side_by_side)

    lead = _network_lead(doc)
    main_sec = Section(f"The study's test on {main}{lead}")
    c = rec.get("c2st") or {}
    if c:
        main_sec.paragraphs.append(classifier_sentence(c))
        main_sec.paragraphs.append(
            f"Logistic regression ({c.get('classifier', '')}) trained on {c.get('n_train')} samples and tested on "
            f"{c.get('n_test')}: accuracy {c['accuracy']:.4f} (95% CI {c['accuracy_ci'][0]:.3f}–"
            f"{c['accuracy_ci'][1]:.3f}), Ê0 = {c['e0']:.4f}, Ê1 = {c['e1']:.4f}, Kim's T = "
            f"{'∞' if c.get('statistic') is None else format(c['statistic'], '.3f')}, "
            f"p = {c['p_asymptotic']:.3g}."
        )
    else:
        main_sec.warnings.append("The classifier tests were skipped on this layer (see the warnings).")
    main_sec.blocks.extend(_main_figures(doc, rec, alpha))
    sections.append(main_sec)
    sections.append(_layer_section(doc, alpha))

    pairs = os.fspath(pairs_png) if pairs_png else fio.join(figdir, "input_pairs.png")
    if fio.exists(pairs):
        sections.append(
            Section(
                "What the network saw",
                blocks=[
                    Figure(
                        fio.read_bytes(pairs),
                        "Example type-1 (object at the fixation) and type-0 (object in the periphery) "
                        "inputs, foveated, cropped and pasted on the canvas exactly as the model received them.",
                        "input_pairs",
                    )
                ],
            )
        )

    for sec in sections:
        for b in sec.blocks:
            if isinstance(b, Figure) and b.name and b.name != "input_pairs":
                fio.write_bytes(fio.join(figdir, f"{b.name}.png"), b.png)
    store = doc.get("store", {})
    sub = (
        f"results: schema {doc.get('schema')} v{doc.get('schema_version')}, created {doc.get('created')}; "
        f"store {store.get('path')}; weights sha256 {str(store.get('weights_checksum'))[:16]}…; "
        f"fovea-ray {doc.get('versions', {}).get('fovea_ray')}"
    )
    page = render_html("fovea-ray: resolution specialisation report", sections, banner=banner, subtitle=sub)
    return write_html(fio.join(out, "report.html"), page)
