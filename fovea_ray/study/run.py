"""``fovea-ray run``: prepare -> extract -> test -> report, resumable, into one folder.

Outputs (``OUT/``): ``run.toml`` (the merged configuration: rerun with
``fovea-ray run --config OUT/run.toml``), ``manifest.parquet`` (+ summary and preview),
``stores/NAME.zarr`` (one per network, :mod:`fovea_ray.study.networks`), ``results.json``,
``figures/*.png`` and ``report.html``. With no dataset named, the embedded demo makes a
synthetic mini-COCO in ``OUT/synthetic/`` first, and compares two random initialisations.

Resuming: the synthetic set and the manifest are deterministic, so they are rebuilt only
when absent; the store resumes chunk by chunk (only unfinished chunks run); the tests and
the report are recomputed (minutes at most) from the finished store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fovea_ray.errors import InputError
from fovea_ray.pipeline.probe import BLOCKS_ALIAS, DEFAULT_ALIAS
from fovea_ray.study.config import STUDY_LAYER, ExtractConfig, RunConfig
from fovea_ray.study.networks import StudyNetwork, study_networks

DEMO_NOTICE = (
    "PIPELINE DEMO, NOT A FINDING: this run used a synthetic mini-COCO (and, by default, two "
    "initialisations of a network with RANDOM weights, compared with each other). Any separation it "
    "reports is a property of untrained filters and of the blur itself, not evidence about a trained detector. "
    "Run with --ann-file/--images and --weights (a checkpoint trained on foveated COCO, see "
    "`fovea-ray train`; its random-weight control is added) for the real study."
)


def _say(msg: str) -> None:
    print(f"[fovea-ray run] {msg}", flush=True)


def _step(name: str, fn: Callable[[], object]) -> object:
    t0 = time.perf_counter()
    _say(f"{name} ...")
    out = fn()
    _say(f"{name} done in {time.perf_counter() - t0:.1f} s")
    return out


def dataset_paths(cfg: RunConfig, out: Path) -> tuple[str, str]:
    """The annotations file and image root: the configured dataset, or the synthetic demo set."""
    if not cfg.data.is_demo:
        return cfg.data.annotations, cfg.data.images
    from fovea_ray.data.synthetic import make_synthetic_coco

    root = out / "synthetic"
    ann = root / "instances.json"
    if not ann.exists():
        _step(
            f"making the synthetic mini-COCO ({cfg.data.synthetic_images} images, {cfg.data.synthetic_size} px)",
            lambda: make_synthetic_coco(
                root, n_images=cfg.data.synthetic_images, seed=cfg.seed, image_size=cfg.data.synthetic_size
            ),
        )
    return str(ann), str(root / "images")


def prepare_manifest(cfg: RunConfig, ann: str, images: str, out: Path) -> Path:
    """Build (or reuse, when its build config matches) ``OUT/manifest.parquet`` and its preview."""
    from fovea_ray.data.manifest import build_manifest, read_manifest, write_manifest

    path = out / "manifest.parquet"
    kwargs = dict(
        n_per_type=cfg.prepare.n_per_type or None,
        seed=cfg.seed,
        canvas=cfg.prepare.canvas,
        pixels_per_degree=cfg.prepare.pixels_per_degree,
        categories=cfg.prepare.categories or None,
        ecc_band=tuple(cfg.prepare.ecc_band),
    )
    if path.exists():
        # Deterministic: same inputs and seed give the same bytes, so a rebuild is only needed
        # when the configuration changed (the store then refuses the new manifest by itself).
        df = build_manifest(ann, images, **kwargs)
        if df.attrs.get("config") == read_manifest(path).attrs.get("config"):
            _say(f"manifest: reusing {path} ({len(df)} samples)")
            return path
    else:
        df = _step(
            "prepare: building the balanced type-1/type-0 manifest", lambda: build_manifest(ann, images, **kwargs)
        )
    write_manifest(df, path)
    s = df.attrs.get("summary", {})
    _say(
        f"manifest: {len(df)} samples ({s.get('per_type', {}).get('1', '?')} per type) "
        f"in {s.get('n_categories', '?')} categories -> {path}"
    )
    if len(df) == 0:
        raise InputError(
            f"{ann}: no eligible type-1/type-0 pairs; nothing to test (see {path.with_suffix('')}.summary.json)"
        )
    try:
        from fovea_ray.data.preview import write_preview

        (out / "figures").mkdir(parents=True, exist_ok=True)
        write_preview(df, out / "figures" / "input_pairs.png", 4, seed=cfg.seed)
    except Exception as exc:  # noqa: BLE001 - a preview must never stop the study
        _say(f"warning: could not render the input preview ({type(exc).__name__}: {exc})")
    return path


def _layers(cfg: RunConfig, net: StudyNetwork) -> list[str]:
    """The layers to tap: a network other than the detector whose layers were left at the
    detector's default sweeps its own blocks and its family's default layer instead
    (``:blocks``, ``:default``)."""
    layers = cfg.extract.layers
    if net.model.arch is None and layers == ExtractConfig().layers:
        return [BLOCKS_ALIAS, DEFAULT_ALIAS]
    return layers


def extract_store(cfg: RunConfig, net: StudyNetwork, manifest: Path, out: Path) -> Path:
    """Extract one network's store, ``OUT/stores/NAME.zarr`` (resumed when it exists)."""
    from fovea_ray.pipeline.extract import extract

    store = net.store(out)
    summary = extract(
        manifest,
        store,
        weights=net.weights,
        **net.extract_network(),
        layers=_layers(cfg, net),
        stats=cfg.extract.stats,
        address=cfg.extract.address or None,
        chunk_size=cfg.extract.chunk_size,
        batch_size=cfg.extract.batch_size,
        seed=net.seed,
        backbone_only=cfg.extract.backbone_only,
    )
    print(summary.format(), flush=True)
    return store


def run_study(cfg: RunConfig) -> Path:
    """Run the whole study described by ``cfg``; return the output folder."""
    from fovea_ray.io import is_url

    if is_url(cfg.out):
        raise InputError(
            f"{cfg.out}: `fovea-ray run` writes to a local folder; for object storage run the steps "
            "(prepare, extract, test, report), which take s3:// (or any fsspec URL) for every output"
        )
    out = Path(cfg.out)
    nets = study_networks(cfg, controls=tuple(cfg.control_networks))  # one-line errors before any work
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "run.toml")
    if cfg.data.is_demo:
        _say(DEMO_NOTICE)
    _say(f"networks: {'; '.join(net.describe() for net in nets)}")
    if cfg.random_control and len(nets) == 2 and not cfg.networks and nets[1].control:
        _say(
            f"added the random-weight control {nets[1].name!r} of the same architecture: a separation is a "
            "finding only where the trained network differs from it (--no-random-control turns it off)"
        )
    ann, images = dataset_paths(cfg, out)
    manifest = prepare_manifest(cfg, ann, images, out)
    for net in nets:
        _step(
            f"extract {net.name}: foveate, tap and reduce (Ray Data)",
            lambda net=net: extract_store(cfg, net, manifest, out),
        )
    results = _step("test: classifier two-sample tests and the layer sweep", lambda: run_tests(cfg, nets, out))
    _step("report: figures and report.html", lambda: render(cfg, results, out))
    _say(f"done: {out / 'report.html'}")
    if cfg.data.is_demo:
        _say(DEMO_NOTICE)
    return out


def run_tests(cfg: RunConfig, nets: list[StudyNetwork], out: Path) -> Path:
    """The test battery on the main layer (figures) and, with ``all_layers``, every layer,
    for every network on the same samples and split; then the networks' comparisons."""
    from fovea_ray.cluster import Execution
    from fovea_ray.stats.battery import BatteryConfig
    from fovea_ray.stats.networks import NetworkEntry, run_network_tests
    from fovea_ray.stats.results import write_results
    from fovea_ray.stats.sweep import run_store_tests

    t = cfg.test
    battery = BatteryConfig(
        alpha=t.alpha,
        permutations=t.permutations,
        full_permutations=t.full_permutations,
        full_layers=t.full_layers,
        classifier=t.classifier,
        seed=cfg.seed,
    )
    # A network other than the detector has no layer3.22.bn3: its store's default layer leads.
    detectors = any(net.model.arch for net in nets)
    main_layer = None if not detectors and t.layer == STUDY_LAYER else (t.layer or None)
    execution = Execution(address=cfg.extract.address or None, progress=True)
    common = dict(
        all_layers=t.all_layers, main_layer=main_layer, stats=t.stats or None, config=battery, execution=execution
    )
    if len(nets) == 1:
        doc = run_store_tests(nets[0].store(out), **common, say=lambda line: _say(f"test: {line}"))
    else:
        entries = [NetworkEntry(net.name, str(net.store(out)), net.control) for net in nets]
        doc = run_network_tests(
            entries,
            **common,
            on_network=lambda name: _say(f"test: network {name}"),
            say=lambda line: _say(f"test: {line}"),
        )
    doc["run_config"] = cfg.to_dict()
    path = write_results(doc, out / "results.json")
    row = next((r for r in doc["table"] if r["layer"] == doc["main_layer"]), None)
    if row and row.get("accuracy") is not None:
        ps = ", ".join(
            f"p {name} = {row[key]:.3g}"
            for key, name in (
                ("p_asymptotic", "asymptotic"),
                ("p_half_permutation", "half-permutation"),
                ("p_full_permutation", "full permutation"),
            )
            if row.get(key) is not None
        )
        _say(f"main layer {doc['main_layer']}: accuracy {row['accuracy']:.3f}, T = {row['statistic']:.3g}, {ps}")
    from fovea_ray.report.networks import answer_paragraphs
    from fovea_ray.report.render import group_warnings

    for paragraph in answer_paragraphs(doc, t.alpha):
        _say(f"answer: {paragraph}")
    for w in group_warnings(doc.get("warnings", []))[:6]:
        _say(f"note: {w}")
    return path


def render(cfg: RunConfig, results: Path, out: Path) -> Path:
    from fovea_ray.report import render_report

    return render_report(results, out, notice=DEMO_NOTICE if cfg.data.is_demo else "")
