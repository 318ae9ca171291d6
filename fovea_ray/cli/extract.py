"""``fovea-ray extract``: run the Ray Data extraction pipeline into a Zarr activation store."""

from __future__ import annotations

import typer

from fovea_ray.cli._options import ADDRESS_HELP, split_list


def extract(
    manifest: str = typer.Argument(..., help="Manifest parquet written by `fovea-ray prepare` (path or fsspec URL)."),
    out: str = typer.Option(
        ..., "--out", "-o", help="Store to create, or to resume if it exists (STORE.zarr, path or URL)."
    ),
    weights: str = typer.Option(
        "none",
        "--weights",
        help="'none' (random weights drawn from --seed), a checkpoint file or training "
        "output directory, or 'torchvision' (COCO weights, resnet50 only; downloaded). With --model: "
        "also a torchvision weights name (IMAGENET1K_V2, DEFAULT), 'pretrained' (timm) or a pretrain folder.",
    ),
    arch: str | None = typer.Option(
        None, "--arch", help="Mask R-CNN backbone: resnet101 (the study's, the default) or resnet50."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Any network instead (MODEL or MODEL@WEIGHTS): resnet50, convnext_tiny, vit_b_16, "
        "timm:NAME, package.module:function, maskrcnn_resnet50_fpn. Layers: fovea-ray info --model M --layers.",
    ),
    layers: list[str] | None = typer.Option(
        None,
        "--layers",
        help="Layers to tap: names or glob patterns, comma-separated or repeated, or :default / :blocks "
        "(default: backbone.body.layer3.22.bn3 for resnet101, as in the study; another network's default layer).",
    ),
    stats: list[str] | None = typer.Option(
        None, "--stats", help="Per-channel reductions, comma-separated or repeated (default: mean,median,max)."
    ),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per forward pass."),
    chunk_size: int = typer.Option(
        32, "--chunk-size", min=1, help="Samples per store chunk (unit of work and of resume)."
    ),
    backbone_only: bool = typer.Option(
        False, "--backbone-only", help="Run only backbone+FPN (faster; no anchor scores)."
    ),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable image instead of recording it."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights (--weights none)."),
    device: str | None = typer.Option(
        None, "--device", help="'cuda' or 'cpu' actors (default: GPU actors where the cluster has GPUs)."
    ),
    num_actors: int | None = typer.Option(
        None, "--num-actors", min=1, help="Model actors (default: one per GPU; on CPU one per 4 cores)."
    ),
    torch_threads: int | None = typer.Option(
        None,
        "--torch-threads",
        min=1,
        help="torch threads per CPU actor (default: the cores per actor). Part of the store's numerics: "
        "a resume must use the same.",
    ),
    allow_mixed_numerics: bool = typer.Option(
        False,
        "--allow-mixed-numerics",
        help="Resume even if the batch size, thread count, device or torch version differ from the store's "
        "(values then differ in round-off between chunks; recorded in the store).",
    ),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show Ray Data progress bars."),
    shared_path: bool = typer.Option(
        False,
        "--shared-path",
        help="--out is a local path on a filesystem every node shares (NFS, EFS); without it a local "
        "--out on a multi-node cluster is refused.",
    ),
    wait_for_resources: bool = typer.Option(
        False,
        "--wait-for-resources",
        help="With --device cuda, start although the cluster has no GPU yet (an autoscaler adds GPU nodes).",
    ),
    stall_timeout: float | None = typer.Option(
        None,
        "--stall-timeout",
        help="Stop with a message after this many seconds without a stored chunk "
        "(default: $FOVEA_RAY_STALL_TIMEOUT, else 600; 0: wait for ever).",
    ),
) -> None:
    """Tap the network on every manifest sample and write the reductions to a Zarr store.

    Read the encoded images (local paths or fsspec URLs such as s3://).

    Decode, foveate, crop and paste onto the canvas, and run Mask R-CNN with taps in an actor pool.

    Write whole store chunks, then mark them done; rerun the same command to resume.

    Unreadable images are recorded in samples/error and listed at the end.
    """
    from fovea_ray.pipeline import DEFAULT_STATS
    from fovea_ray.pipeline import extract as run_extract

    summary = run_extract(
        manifest,
        out,
        weights=weights,
        arch=arch,
        model=model,
        layers=split_list(layers),
        stats=split_list(stats) or DEFAULT_STATS,
        address=address,
        chunk_size=chunk_size,
        batch_size=batch_size,
        seed=seed,
        strict=strict,
        backbone_only=backbone_only,
        device=device,
        num_actors=num_actors,
        precision=precision,
        torch_threads=torch_threads,
        allow_mixed_numerics=allow_mixed_numerics,
        progress=progress,
        shared_path=shared_path,
        wait_for_resources=wait_for_resources,
        stall_timeout=stall_timeout,
    )
    typer.echo(summary.format())
