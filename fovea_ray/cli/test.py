"""``fovea-ray test``: run the classifier two-sample tests on a store."""

from __future__ import annotations

import typer

from fovea_ray.cli._options import ADDRESS_HELP, permutation_count


def test(
    store: str | None = typer.Argument(
        None, help="Activation store written by `fovea-ray extract` (STORE.zarr, path or URL)."
    ),
    stores: list[str] | None = typer.Option(
        None,
        "--store",
        help="NAME=STORE, repeatable: test several networks' stores (made from one manifest) on the same "
        "samples and split, and compare them layer by layer (paired accuracy difference, McNemar, Holm).",
    ),
    control: list[str] | None = typer.Option(
        None,
        "--control",
        help="With --store: the NAMEs that are controls (random weights, trained without foveation); each "
        "other network is compared with each control of its architecture. Default: every pair.",
    ),
    out: str = typer.Option(
        ..., "--out", "-o", help="Results file to write (results.json; a path or URL such as s3://bucket/results.json)."
    ),
    layer: str | None = typer.Option(
        None,
        "--layer",
        help="The main layer (figure data, full permutation test). Default: "
        "backbone.body.layer3.22.bn3 if tapped, else the deepest layer.",
    ),
    layers: list[str] | None = typer.Option(
        None,
        "--layers",
        help="Also test these layers (comma-separated or repeated; exact names in the store).",
    ),
    all_layers: bool = typer.Option(
        False, "--all-layers", help="Also run the battery on every other layer (one Ray task each)."
    ),
    stats: list[str] | None = typer.Option(
        None,
        "--stats",
        help="Per-channel statistics to use, comma-separated, any case (topk_mean = topk_mean@0.1; "
        "default: all in the store; the study used mean,max: d = 2C). The controls/pixels row "
        "uses the same ones, plus hf_energy.",
    ),
    permutations: str = typer.Option(
        "auto",
        "--permutations",
        help="P of the half-permutation test (0: skip). auto: the smallest P with which every decision "
        "can reject (P >= m/alpha - 1 for BH across m layers); a smaller P leaves decisions undecided.",
    ),
    full_permutations: str = typer.Option(
        "0",
        "--full-permutations",
        help="P of the full permutation test (refit per permutation, batched solver on Ray; "
        "0: skip; auto: the smallest P that can reject at --alpha).",
    ),
    full_layers: str = typer.Option(
        "main", "--full-layers", help="Where the full permutation test runs: main (the main layer) or all."
    ),
    classifier: str = typer.Option(
        "standardized",
        "--classifier",
        help="standardized (default: features scaled per channel with the training split's statistics, "
        "L2 logistic at its optimum), unscaled (the study's objective at its optimum) or study (the study's "
        "LogisticRegression: unscaled, C=1, lbfgs, 500 iterations; reproduces the paper).",
    ),
    alpha: float = typer.Option(0.01, "--alpha", help="Level of the decisions."),
    test_size: float = typer.Option(0.5, "--test-size", help="Held-out fraction of each type (the study's 1/2)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Master seed (split and every permutation)."),
    mmd_permutations: int = typer.Option(500, "--mmd-permutations", min=0, help="P of the MMD kernel test (0: skip)."),
    fdr: float = typer.Option(0.05, "--fdr", help="FDR level of the per-channel selectivity counts."),
    controls: bool = typer.Option(True, "--controls/--no-controls", help="Add the controls/pixels baseline row."),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    local: bool = typer.Option(False, "--local", help="Run in this process, without Ray."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda for the batched solver and the MMD kernel."),
    precision: str = typer.Option(
        "mixed",
        "--precision",
        help="Batched solver precision: mixed (float32 GEMMs, float64 finish; default), "
        "float32 (fastest, approximate optimum) or float64.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Run the classifier two-sample tests (and the rest of the battery) on a store.

    Tests: Kim et al.'s asymptotic and half-permutation tests, the full permutation test,
    Friedman's score tests, D'Agostino-Pearson normality of the scores, Cai et al.'s
    odds-ratio test, MMD, and per-channel selectivity.

    Only samples that are done without error are used. Layers run as Ray tasks (--local: in this process).

    With --store NAME=STORE (repeated) it tests each network's store on the samples they
    all hold and compares the networks (a `networks` section and a `comparisons` table).

    Writes results.json (schema: fovea_ray/stats/results.py).
    """
    from fovea_ray.cluster import Execution
    from fovea_ray.errors import InputError
    from fovea_ray.names import PRECISIONS, canonical_stats, split_names
    from fovea_ray.stats.battery import BatteryConfig
    from fovea_ray.stats.results import write_results
    from fovea_ray.stats.sweep import run_store_tests

    if not 0 < alpha < 1:
        raise InputError(f"--alpha must lie in (0, 1), got {alpha}")
    if not 0 < test_size < 1:
        raise InputError(f"--test-size must lie in (0, 1), got {test_size}")
    if not 0 < fdr < 1:
        raise InputError(f"--fdr must lie in (0, 1), got {fdr}")
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    try:
        cfg = BatteryConfig(
            alpha=alpha,
            test_size=test_size,
            permutations=permutation_count(permutations),
            full_permutations=permutation_count(full_permutations),
            full_layers=full_layers,
            classifier=classifier,
            seed=seed,
            mmd_permutations=mmd_permutations,
            fdr=fdr,
            precision=precision,
        )
    except ValueError as exc:
        msg = str(exc)
        for name in ("full_permutations", "permutations", "classifier", "full_layers"):
            if msg.startswith(f"{name} must"):
                msg = f"Invalid value for '--{name.replace('_', '-')}': {msg[len(name) + 1 :]}"
                break
        raise InputError(msg) from None
    execution = Execution(use_ray=not local, address=address, device=device, progress=progress)
    try:
        stat_names = canonical_stats(split_names(stats)) if split_names(stats) else None
    except ValueError as exc:
        raise InputError(f"--stats: {exc}") from None
    entries = _network_entries(store, stores, control)
    common = dict(
        layers=split_names(layers) or None,
        all_layers=all_layers,
        main_layer=layer,
        stats=stat_names,
        config=cfg,
        execution=execution,
        include_controls=controls,
    )
    # The plan and its costs are printed with the summary: an error exit stays one line.
    said: list[str] = []
    if entries is None:
        doc = run_store_tests(store, **common, say=said.append)
    else:
        from fovea_ray.stats.networks import run_network_tests

        doc = run_network_tests(
            entries, **common, on_network=lambda name: said.append(f"network {name}:"), say=said.append
        )
    path = write_results(doc, out)
    typer.echo("\n".join([*said, _summary(doc, path)]))


def _network_entries(store: str | None, stores: list[str] | None, control: list[str] | None):
    """The --store NAME=STORE networks (None for one plain STORE); one-line errors."""
    from fovea_ray.errors import InputError
    from fovea_ray.model.spec import NETWORK_NAME_RULE, valid_network_name
    from fovea_ray.names import split_names
    from fovea_ray.stats.networks import NetworkEntry

    if store and stores:
        raise InputError("give one STORE, or several --store NAME=STORE, not both")
    if not store and not stores:
        raise InputError("give a STORE (or --store NAME=STORE, repeated, to compare networks)")
    controls = split_names(control)
    if store:
        if controls:
            raise InputError("--control names a network of --store NAME=STORE")
        return None
    entries, names = [], set()
    for text in stores:
        name, eq, path = text.partition("=")
        name, path = name.strip(), path.strip()
        if not eq or not name or not path:
            raise InputError(f"--store {text!r}: write NAME=STORE (e.g. trained=stores/trained.zarr)")
        if not valid_network_name(name):
            raise InputError(f"--store {text!r}: bad network name {name!r} ({NETWORK_NAME_RULE})")
        if name in names:
            raise InputError(f"--store: network name {name!r} is used twice")
        names.add(name)
        entries.append(NetworkEntry(name, path, control=name in controls))
    unknown = [c for c in controls if c not in names]
    if unknown:
        raise InputError(f"--control {unknown[0]!r} is not a --store name ({', '.join(sorted(names))})")
    return entries


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _summary(doc: dict, path) -> str:
    from fovea_ray.report.networks import answer_paragraphs

    lines = [
        f"wrote {path}",
        f"samples used: {doc['samples']['n_used']} of {doc['samples']['n_total']} "
        f"(type 1: {doc['samples']['per_type']['1']}, type 0: {doc['samples']['per_type']['0']})",
    ]
    lines.append(
        f"{'layer':44s} {'acc':>6s} {'T':>8s} {'p_asym':>9s} {'p_half':>9s} {'p_full':>9s} {'p_layer':>9s} {'sel':>5s}"
    )
    for r in doc["table"]:
        lines.append(
            f"{r['layer'][:44]:44s} {_fmt(r['accuracy'], '6.3f')} {_fmt(r['statistic'], '8.2f')} "
            f"{_fmt(r['p_asymptotic'], '9.2e')} {_fmt(r['p_half_permutation'], '9.2e')} "
            f"{_fmt(r['p_full_permutation'], '9.2e')} {_fmt(r.get('p_layer'), '9.2e')} {_fmt(r['n_selective'], '5d')}"
        )
    alpha = float(doc.get("config", {}).get("alpha", 0.01))
    lines += [f"answer: {p}" for p in answer_paragraphs(doc, alpha)]
    if doc["warnings"]:
        lines.append(f"{len(doc['warnings'])} warnings (see the results file), e.g.: {doc['warnings'][0]}")
    return "\n".join(lines)
