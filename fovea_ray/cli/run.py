"""``fovea-ray run``: prepare -> extract -> test -> report in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from fovea_ray.cli._options import ADDRESS_HELP, permutation_count, split_list
from fovea_ray.names import MAX_CANVAS


def run(
    out: str | None = typer.Option(None, "--out", "-o", help="Output folder (default: fovea-ray-out)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML run configuration; flags override it."),
    coco_root: Path | None = typer.Option(
        None, "--coco-root", help="A COCO folder with annotations/instances_<split>.json and <split>/ images."
    ),
    split: str = typer.Option("val2017", "--split", help="The split under --coco-root."),
    ann_file: str | None = typer.Option(None, "--ann-file", "--annotations", help="COCO instances JSON."),
    images: str | None = typer.Option(None, "--images", help="Image root (local folder or fsspec URL)."),
    weights: str | None = typer.Option(
        None, "--weights", help="'none' (random), a checkpoint, a `fovea-ray train` folder, or 'torchvision'."
    ),
    networks: list[str] | None = typer.Option(
        None,
        "--network",
        help="NAME=MODEL@WEIGHTS or NAME=WEIGHTS (the study's model), repeatable: the networks to compare, "
        "each extracted into stores/NAME.zarr from one manifest (e.g. trained=runs/foveated, "
        "coco=maskrcnn_resnet50_fpn@torchvision, rand=none).",
    ),
    control: list[str] | None = typer.Option(
        None,
        "--control",
        help="A --network NAME that is a control (random, trained without foveation): the other networks are "
        "compared with each control of their architecture. Default: every pair.",
    ),
    random_control: bool | None = typer.Option(
        None,
        "--random-control/--no-random-control",
        help="With one network with learnt weights, add its random-weight control 'random' (default: on).",
    ),
    arch: str | None = typer.Option(None, "--arch", help="resnet101 (default) or resnet50."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Any network instead of Mask R-CNN (MODEL or MODEL@WEIGHTS): resnet50, vit_b_16, timm:NAME, "
        "package.module:function; its blocks and its default layer are swept.",
    ),
    n_per_type: int | None = typer.Option(None, "--n-per-type", min=1, help="Cap on samples per type."),
    canvas: int | None = typer.Option(
        None, "--canvas", min=32, max=MAX_CANVAS, help=f"Model canvas, px (at most {MAX_CANVAS})."
    ),
    ppd: float | None = typer.Option(None, "--ppd", help="Pixels per degree of visual angle."),
    layers: list[str] | None = typer.Option(None, "--layers", help="Layers to tap (names or patterns)."),
    main_layer: str | None = typer.Option(None, "--layer", help="The main layer (figures, full permutation)."),
    permutations: str | None = typer.Option(
        None,
        "--permutations",
        help="Half-permutation P, or auto (default: the smallest P every decision can reject with).",
    ),
    full_permutations: str | None = typer.Option(
        None, "--full-permutations", help="Full-permutation P, or auto (default; 0 skips the test)."
    ),
    classifier: str | None = typer.Option(
        None,
        "--classifier",
        help="standardized (default), unscaled, or study (the paper's classifier: unscaled, C=1, lbfgs 500).",
    ),
    alpha: float | None = typer.Option(None, "--alpha", help="Significance level."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of every random choice."),
    backbone_only: bool | None = typer.Option(
        None, "--backbone-only/--full-model", help="Stop after the deepest tapped layer (no anchor scores)."
    ),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
) -> None:
    """Run the whole study: prepare -> extract -> test -> report, into one folder.

    With no arguments it runs the embedded demo: a synthetic mini-COCO made on the fly and
    two random initialisations of R101-FPN on a small canvas, compared layer by layer (a
    pipeline demo, not a finding). With a dataset (--coco-root, or --ann-file and --images)
    and --weights it runs the real study, with the random-weight control added; --network
    (repeated) names the networks to compare. Outputs: run.toml, manifest.parquet,
    stores/NAME.zarr (one per network), results.json, figures/, report.html.
    Rerun the same command to resume an interrupted run.
    """
    from fovea_ray.errors import InputError
    from fovea_ray.study.config import load_config
    from fovea_ray.study.run import run_study

    if coco_root is not None:
        if ann_file or images:
            raise InputError("give --coco-root, or --ann-file and --images, not both")
        ann_file = str(coco_root / "annotations" / f"instances_{split}.json")
        images = str(coco_root / split)
    overrides = {
        "out": out,
        "seed": seed,
        "networks": list(networks) if networks else None,
        "control_networks": split_list(control),
        "random_control": random_control,
        "data": {"annotations": ann_file, "images": images},
        "prepare": {"n_per_type": n_per_type, "canvas": canvas, "pixels_per_degree": ppd},
        "extract": {
            "arch": arch,
            "model": model,
            "weights": weights,
            "layers": split_list(layers),
            "backbone_only": backbone_only,
            "address": address,
        },
        "test": {
            "layer": main_layer,
            "permutations": permutation_count(permutations),
            "full_permutations": permutation_count(full_permutations),
            "classifier": classifier,
            "alpha": alpha,
        },
    }
    cfg = load_config(config, overrides)
    run_study(cfg)
