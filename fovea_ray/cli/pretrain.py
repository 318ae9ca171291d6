"""``fovea-ray pretrain``: pre-train the backbone on foveated ImageNet with Ray Train."""

from __future__ import annotations

from pathlib import Path

import typer

from fovea_ray.cli._options import ADDRESS_HELP


def pretrain(
    data: str = typer.Option(
        ..., "--data", help="ImageFolder root with train/<wnid>/*.JPEG (and val/<wnid>/*): a path or fsspec URL."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder: checkpoints, metrics.jsonl; rerun the same command to resume."
    ),
    arch: str = typer.Option(
        "resnet101", "--arch", help="Classifier: resnet101 (the study's), resnet50, or resnet18 (tests, demos)."
    ),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps in total (ignored with --epochs)."),
    epochs: float | None = typer.Option(
        None, "--epochs", help="Train for this many passes over train/ (sets --steps from the image count)."
    ),
    workers: int = typer.Option(1, "--workers", help="Ray Train workers (DDP ranks); one GPU each when GPUs are used."),
    gpu: bool | None = typer.Option(
        None, "--gpu/--no-gpu", help="Use one GPU per worker (default: when the cluster has GPUs)."
    ),
    cpus_per_worker: float = typer.Option(
        1.0, "--cpus-per-worker", help="CPUs reserved per worker (fractions leave room for Ray Data's decode tasks)."
    ),
    torch_threads: int = typer.Option(1, "--torch-threads", help="Torch threads per CPU worker."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per worker per step."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default 0.1 x global batch / 256)."),
    momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum (Nesterov)."),
    weight_decay: float = typer.Option(
        1e-4, "--weight-decay", help="Weight decay of conv/linear weights (not BN, not biases)."
    ),
    warmup_steps: int | None = typer.Option(
        None, "--warmup-steps", help="Linear warm-up steps before the cosine decay (default: 5% of the run)."
    ),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing", help="Cross-entropy label smoothing."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="bfloat16 autocast on GPU workers."),
    input_size: int = typer.Option(224, "--input-size", help="Network input side after the random-resized crop."),
    max_side: int = typer.Option(
        512, "--max-side", help="Decoded images are downscaled in the CPU task to at most this side (0 = never)."
    ),
    min_crop_scale: float = typer.Option(
        0.08, "--min-crop-scale", help="Smallest random-resized-crop area, as a fraction of the image (ImageNet: 0.08)."
    ),
    hflip: float = typer.Option(0.5, "--hflip", help="Probability of a horizontal flip per image."),
    fixation: str = typer.Option(
        "center", "--fixation", help="Fixation policy: center (the study's), uniform, or none (unfoveated control)."
    ),
    ppd: float = typer.Option(30.0, "--ppd", help="Foveation: pixels per degree of visual angle."),
    eval_every: int = typer.Option(0, "--eval-every", help="Top-1/top-5 on val/ every N steps (0 = only at the end)."),
    eval_max_images: int | None = typer.Option(
        None, "--eval-max-images", help="Evaluate on a seeded subset of at most this many val images."
    ),
    checkpoint_every: int = typer.Option(
        1000, "--checkpoint-every", help="Report a checkpoint every N steps (and at the end)."
    ),
    keep_checkpoints: int | None = typer.Option(3, "--keep-checkpoints", help="Checkpoints kept (newest)."),
    log_every: int = typer.Option(10, "--log-every", help="Write a metrics line every N steps."),
    max_failures: int = typer.Option(
        3, "--max-failures", help="Worker failures retried from the last checkpoint (-1 = always)."
    ),
    read_concurrency: int | None = typer.Option(
        None, "--read-concurrency", help="Parallel decode tasks per worker's stream (default: Ray decides)."
    ),
    probe_images: int = typer.Option(
        64, "--probe-images", help="Images decoded on the driver before training (bad data fails early)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights, data order, fixations, crops and flips."),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
) -> None:
    """Pre-train the backbone on foveated ImageNet with Ray Train: the study's network from scratch.

    Data: ImageFolder (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG), a path or fsspec URL, streamed by Ray Data.

    Images are decoded to uint8 in CPU tasks and foveated on the device, in their own geometry, before the crop.

    --fixation none trains the unfoveated control (the clean two-stage recipe).

    Recipe: SGD + Nesterov, warm-up + cosine LR, no decay on BN/bias, label smoothing, bfloat16 on GPU.

    Use the output as `fovea-ray train --backbone-weights OUT`. Rerun the same command to resume exactly.
    """
    from fovea_ray.pretrain import PretrainConfig
    from fovea_ray.pretrain import pretrain as run_pretraining
    from fovea_ray.train.metrics import read_metrics

    cfg = PretrainConfig(
        data=str(data),
        out=str(out),
        arch=arch,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        label_smoothing=label_smoothing,
        amp=amp,
        input_size=input_size,
        max_side=max_side or None,
        crop_scale=(min_crop_scale, 1.0),
        hflip=hflip,
        fixation=fixation,
        pixels_per_degree=ppd,
        workers=workers,
        use_gpu=gpu,
        cpus_per_worker=cpus_per_worker,
        torch_threads=torch_threads,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        log_every=log_every,
        eval_every=eval_every,
        eval_max_images=eval_max_images,
        max_failures=max_failures,
        read_concurrency=read_concurrency,
        probe_images=probe_images,
        seed=seed,
    )
    result = run_pretraining(cfg, address=address)
    records = read_metrics(result.out)
    evals = [r for r in records if "val_top1" in r]
    if evals:
        e = evals[-1]
        typer.echo(
            f"validation (step {e['step']}): top-1 {e['val_top1']:.3f}, top-5 {e['val_top5']:.3f} "
            f"on {e['val_images']} images"
        )
    skipped = max((r.get("skipped_images", 0) or 0 for r in records), default=0)
    if skipped:
        typer.echo(f"skipped {skipped} unreadable training images")
    typer.echo(f"checkpoint (step {result.step}): {result.checkpoint}")
    typer.echo(f"use it with: fovea-ray train --backbone-weights {result.out} --arch {cfg.arch} ...")
