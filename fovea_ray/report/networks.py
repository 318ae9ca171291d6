"""The report's answer in words and its networks-side-by-side section.

The answer paragraph is generated from the numbers of a results document (one network,
or several with ``networks`` and ``comparisons``, :mod:`fovea_ray.stats.networks`): where
each network separates the types, where a trained network differs from its controls, and
where resolutions merge.
"""

from __future__ import annotations

from typing import Any

from fovea_ray.report import figures as F
from fovea_ray.report.html import Figure, Section, Table

__all__ = ["answer_paragraphs", "networks_section", "reconciliation"]

_RANDOM = ("none", "random")


def _short(layer: str) -> str:
    return layer.replace("backbone.body.", "")


def _list(layers: list[str], limit: int = 6) -> str:
    names = [_short(x) for x in layers]
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


def _is_random(net: dict[str, Any]) -> bool:
    return str(net.get("weights") or "none").lower() in _RANDOM


def _single_network(doc: dict[str, Any], alpha: float) -> dict[str, Any]:
    """The network record of a one-network document (what ``networks`` would hold)."""
    from fovea_ray.stats.networks import plan_of, separation

    config = (doc.get("store") or {}).get("config") or {}
    return {
        "name": "The network",
        "model": config.get("model") or config.get("arch", ""),
        "weights": config.get("weights"),
        **separation(doc.get("layers", {}), alpha=alpha, plan=plan_of(doc)),
        "table": [row for row in doc.get("table", []) if row["kind"] == "layer"],
    }


_TEST_WORDS = {
    "kim_asymptotic": "Kim's asymptotic test",
    "kim_half_permutation": "the half permutation test",
    None: "each layer's deciding test",
}


def _network_sentence(net: dict[str, Any], alpha: float) -> str:
    n = net.get("n_layers_tested", len(net["table"]))
    sep = net["separating_layers"]
    who = f"{net['name']} ({'random weights' if _is_random(net) else 'weights ' + str(net.get('weights'))})"
    if net.get("decided") is False:
        return f"Whether {who} separates sharp from blurred objects {net.get('undecided')}."
    test = _TEST_WORDS.get(net.get("layer_test"), "each layer's deciding test")
    if not sep:
        return (
            f"{who} separates sharp from blurred objects at none of its {n} layers tested "
            f"({test}, Benjamini–Hochberg across layers at α = {alpha:g}; every layer could have rejected)."
        )
    where = (
        f"at {len(sep)} of {n} layers tested ({test}, BH at α = {alpha:g}), from {_short(sep[0])} to {_short(sep[-1])}"
    )
    merge = net.get("merge_layer")
    tail = (
        f"resolutions merge from {_short(merge)} on (no deeper layer separates them)"
        if merge
        else "the types stay separate to the deepest layer tested"
    )
    return f"{who} separates sharp from blurred objects {where}; {tail}."


def _comparison_sentence(c: dict[str, Any], nets: dict[str, dict], alpha: float) -> str:
    a, b = c["network_a"], c["network_b"]
    undecidable = c.get("undecidable") or []
    if not c["different"]:
        text = f"{a} and {b} are called different at no layer (McNemar's test, Holm-adjusted over {c['n_layers']} "
        text += f"layers at α = {alpha:g})"
        if _is_random(nets.get(a, {})) and _is_random(nets.get(b, {})):
            text += "; both are random initialisations of one architecture, so no difference is expected"
        if undecidable:
            text += (
                f"; at {len(undecidable)} of them the two classifiers disagree on too few held-out samples for "
                "McNemar's test to reach Holm's threshold, so there no difference could have been found"
            )
        return text + "."
    parts = []
    if c["a_separates_more"]:
        parts.append(f"separates the types more than {b} at {_list(c['a_separates_more'])}")
    if c["a_separates_less"]:
        less = f"separates them less at {_list(c['a_separates_less'])}"
        if not (_is_random(nets.get(a, {})) and _is_random(nets.get(b, {}))):
            less += ", where its training built blur invariance"
        parts.append(less)
    text = (
        f"{a} differs from {b} at {len(c['different'])} of {c['n_layers']} layers (McNemar, Holm at α = "
        f"{alpha:g}): it {' and '.join(parts)}."
    )
    if _is_random(nets.get(a, {})) and _is_random(nets.get(b, {})):
        text += (
            " Both have random weights, so this is a difference between two draws of random filters (and of the "
            "classifiers fitted to them, which McNemar's test holds fixed), not an effect of training."
        )
    return text


def answer_paragraphs(doc: dict[str, Any], alpha: float) -> list[str]:
    """The answer in words, from the numbers: separation, differences, merging."""
    nets = list(doc.get("networks") or [])
    out = []
    if not nets:
        out.append(_network_sentence(_single_network(doc, alpha), alpha))
    else:
        out.extend(_network_sentence(net, alpha) for net in nets)
    lead = nets[0] if nets else _single_network(doc, alpha)
    reconcile = reconciliation(doc, lead, alpha)
    if reconcile:
        out.append(reconcile)
    ctrl = next((r for r in doc.get("table", []) if r["kind"] == "control" and r.get("accuracy") is not None), None)
    if ctrl is not None:
        out.append(
            f"The input's pixel statistics alone reach a held-out accuracy of {ctrl['accuracy']:.2f}: blur is "
            "visible in the input itself, so a layer's separation means little without a control network."
        )
    by_name = {net["name"]: net for net in nets}
    summary = doc.get("comparison_summary") or []
    out.extend(_comparison_sentence(c, by_name, alpha) for c in summary)
    if not nets:
        out.append(
            "No control network was compared (e.g. the same architecture with random weights: `fovea-ray run "
            "--weights W` adds it), so this separation is not yet a finding about training."
        )
    elif not summary:
        out.append(
            "No pair of networks was compared: none shares an architecture with a control, or no layer has "
            "held-out predictions from both (the classifier tests are skipped at very small n; see the notes)."
        )
    return out


def reconciliation(doc: dict[str, Any], net: dict[str, Any], alpha: float) -> str:
    """One sentence where the battery's other tests reject at layers the classifier decision
    does not call separating (or the reverse), saying why they can disagree."""
    layers = {name: rec for name, rec in (doc.get("layers") or {}).items() if rec.get("kind") == "layer"}
    if not layers or net.get("decided") is False:
        return ""
    separating = set(net.get("separating_layers") or [])
    mmd = [n for n, r in layers.items() if any(t["name"] == "mmd" and t.get("reject") for t in r.get("tests", []))]
    selective = [n for n, r in layers.items() if ((r.get("selectivity") or {}).get("n_selective") or 0) > 0]
    other = sorted(set(mmd) | set(selective), key=list(layers).index)
    missed = [n for n in other if n not in separating]
    if not missed:
        return ""
    first = next(iter(layers.values()))
    n = first.get("n_type1", 0) + first.get("n_type0", 0)
    d = max(int(r.get("d") or 0) for r in layers.values())
    parts = []
    if set(mmd) & set(missed):
        parts.append(f"MMD rejects at {len(set(mmd) & set(missed))}")
    if set(selective) & set(missed):
        parts.append(f"per-channel tests find selective channels at {len(set(selective) & set(missed))}")
    return (
        f"At {len(missed)} layers the classifier decision does not call separating ({_list(missed, 4)}), "
        f"{' and '.join(parts)} of them: those tests use every sample and look at one channel or a kernel "
        f"at a time, each at α = {alpha:g} or FDR without adjustment across layers, while the classifier learns "
        f"a direction in d = {d} dimensions from half of n = {n} samples and is BH-adjusted across "
        f"{len(layers)} layers; with d ≫ n it has less power, so these layers show a difference that the "
        "decision cannot confirm, not evidence that there is none."
    )


def _curves(nets: list[dict[str, Any]]) -> tuple[dict, list[str]]:
    curves, order = {}, []
    for net in nets:
        rows = [r for r in net["table"] if r.get("accuracy") is not None]
        for r in rows:
            if r["layer"] not in order:
                order.append(r["layer"])
        curves[net["name"]] = (
            [r["layer"] for r in rows],
            [r["accuracy"] for r in rows],
            [r["accuracy_ci_low"] for r in rows],
            [r["accuracy_ci_high"] for r in rows],
        )
    return curves, order


def _merge_cell(net: dict[str, Any]) -> str:
    if net.get("decided") is False:
        return "– (undecided: too few permutations)"
    if not net["separating_layers"]:
        return "– (no layer separates)"
    return _short(net["merge_layer"]) if net.get("merge_layer") else "none (separate to the end)"


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


def networks_section(doc: dict[str, Any], alpha: float) -> Section | None:
    """Networks side by side: their table, overlaid layer curves, and per pair a
    difference plot and table. None for a one-network document."""
    nets = list(doc.get("networks") or [])
    if not nets:
        return None
    sec = Section("Networks side by side")
    sec.paragraphs.append(
        "Every network was tested on the same samples and the same held-out split. Each comparison is "
        "McNemar's exact test on the held-out predictions the two networks' classifiers disagree on, with "
        "Newcombe's paired 95% interval for the accuracy difference, Holm-adjusted across the pair's layers. "
        "It conditions on the fitted classifiers (Dietterich 1998)."
    )
    sec.blocks.append(
        Table(
            ["network", "role", "model", "weights", "seed", "separating layers", "merge layer"],
            [
                [
                    n["name"],
                    n["role"],
                    n["model"],
                    str(n.get("weights")),
                    "–" if not _is_random(n) else n.get("seed"),
                    f"{len(n['separating_layers'])} of {len(n['table'])}",
                    _merge_cell(n),
                ]
                for n in nets
            ],
            caption=f"Separating layers: H0 rejected by the layer's deciding test, Benjamini–Hochberg adjusted "
            f"across layers at α = {alpha:g}. Merge layer: the shallowest layer from which no deeper layer separates "
            "the types.",
            left=["network", "role", "model", "weights"],
        )
    )
    curves, order = _curves(nets)
    ctrl = next((r for r in doc.get("table", []) if r["kind"] == "control" and r.get("accuracy") is not None), None)
    if order:
        sec.blocks.append(
            Figure(
                F.network_layer_curves(
                    curves,
                    order=order,
                    control=None
                    if ctrl is None
                    else (ctrl["accuracy"], ctrl["accuracy_ci_low"], ctrl["accuracy_ci_high"]),
                ),
                "Held-out accuracy per layer (95% Clopper–Pearson interval) for every network, in depth order; "
                "the band is the classifier on the input's pixel statistics.",
                "networks_layers",
            )
        )
    rows = doc.get("comparisons") or []
    for k, c in enumerate(doc.get("comparison_summary") or []):
        pair = [r for r in rows if r["network_a"] == c["network_a"] and r["network_b"] == c["network_b"]]
        if not pair:
            continue
        title = f"{c['network_a']} − {c['network_b']}: held-out accuracy difference per layer"
        sec.blocks.append(
            Figure(
                F.accuracy_differences(
                    [r["layer"] for r in pair],
                    [r["accuracy_difference"] for r in pair],
                    [r["ci_low"] for r in pair],
                    [r["ci_high"] for r in pair],
                    [r["different"] for r in pair],
                    title=title,
                ),
                f"{title}, with Newcombe's paired 95% interval (not adjusted); filled: called different by "
                f"McNemar's test after Holm's adjustment at α = {c['alpha']:g}.",
                f"difference_{k}",
            )
        )
        sec.blocks.append(
            Table(
                [
                    "layer",
                    f"acc {c['network_a']}",
                    f"acc {c['network_b']}",
                    "difference",
                    "95% CI",
                    f"only {c['network_a']} right",
                    f"only {c['network_b']} right",
                    "p McNemar",
                    "p Holm",
                    "different",
                ],
                [
                    [
                        _short(r["layer"]),
                        r["accuracy_a"],
                        r["accuracy_b"],
                        f"{r['accuracy_difference']:+.3f}",
                        f"{_fmt(r['ci_low'])} to {_fmt(r['ci_high'])}",
                        r["only_a_correct"],
                        r["only_b_correct"],
                        r["pvalue"],
                        r["pvalue_holm"],
                        "yes" if r["different"] else "no",
                    ]
                    for r in pair
                ],
                caption=f"{c['network_a']} against {c['network_b']}, layer by layer.",
                left=["layer", "different"],
            )
        )
    return sec
