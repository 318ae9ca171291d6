"""``fovea-ray train``: train Mask R-CNN on foveated COCO with Ray Train."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from fovea_ray.cli._options import ADDRESS_HELP
from fovea_ray.errors import InputError
from fovea_ray.train.config import TrainConfig

#: The trainer's defaults: the options show and pass these, so the CLI never restates them.
_D = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}


def _milestones(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--milestones: expected fractions of --steps such as 0.67,0.89, got {text!r}") from None
    return values


def train(
    ann_file: str = typer.Option(
        ..., "--ann-file", help="COCO instances JSON of the training set (path or fsspec URL)."
    ),
    images: str = typer.Option(
        ..., "--images", help="Folder the annotations' file_name values are relative to (path or URL)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder: checkpoints, metrics.jsonl; rerun the same command to resume."
    ),
    steps: int = typer.Option(
        _D["steps"], "--steps", help="Optimizer steps in total (a resumed run continues to this count)."
    ),
    workers: int = typer.Option(
        _D["workers"], "--workers", help="Ray Train workers (DDP ranks); one GPU each when GPUs are used."
    ),
    gpu: bool | None = typer.Option(
        None, "--gpu/--no-gpu", help="Use one GPU per worker (default: when the cluster has GPUs)."
    ),
    cpus_per_worker: int = typer.Option(
        _D["cpus_per_worker"], "--cpus-per-worker", help="CPUs reserved per worker (and torch threads on CPU workers)."
    ),
    loader_workers: int = typer.Option(
        _D["loader_workers"],
        "--loader-workers",
        help="Data-loading processes per worker (0 = in the training process).",
    ),
    arch: str = typer.Option(_D["arch"], "--arch", help="Backbone: resnet101 (the study's) or resnet50."),
    weights: str | None = typer.Option(
        None, "--weights", help="Initial Mask R-CNN weights: a checkpoint path or 'torchvision' (default: random)."
    ),
    backbone_weights: str | None = typer.Option(
        None,
        "--backbone-weights",
        help="ImageNet ResNet state dict (path) or 'torchvision' for the backbone (default: none, from scratch).",
    ),
    trainable_layers: int = typer.Option(
        _D["trainable_layers"], "--trainable-layers", help="Backbone stages that train, 0-5 (torchvision's default 3)."
    ),
    batch_size: int = typer.Option(_D["batch_size"], "--batch-size", help="Images per worker per step."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default 0.02 x global batch / 16)."),
    momentum: float = typer.Option(_D["momentum"], "--momentum", help="SGD momentum."),
    weight_decay: float = typer.Option(_D["weight_decay"], "--weight-decay", help="SGD weight decay."),
    schedule: str = typer.Option(
        _D["schedule"], "--schedule", help="After warm-up: 'step' (x0.1 at the milestones) or 'cosine'."
    ),
    milestones: str | None = typer.Option(
        None, "--milestones", help="Step-schedule milestones as fractions of --steps (default 2/3,8/9)."
    ),
    warmup_steps: int | None = typer.Option(
        None, "--warmup-steps", help="Linear warm-up steps (default: a tenth of the run, at most 500)."
    ),
    clip_grad_norm: float = typer.Option(
        _D["clip_grad_norm"], "--clip-grad-norm", help="Cap on the total gradient norm (0 = off)."
    ),
    amp: bool = typer.Option(
        _D["amp"], "--amp/--no-amp", help="Mixed precision (float16 autocast + grad scaling) on GPU workers."
    ),
    hflip: float = typer.Option(_D["hflip"], "--hflip", help="Probability of a horizontal flip per image."),
    fixation: str = typer.Option(
        _D["fixation"],
        "--fixation",
        help="Fixation policy: center (the study's), uniform, or none (unfoveated control).",
    ),
    ppd: float = typer.Option(_D["pixels_per_degree"], "--ppd", help="Foveation: pixels per degree of visual angle."),
    min_size: int | None = typer.Option(
        None,
        "--min-size",
        help="Resize inside the model (e.g. 800; with --max-size). Default: native pixel scale, as the analysis.",
    ),
    max_size: int | None = typer.Option(
        None, "--max-size", help="Longest side after resizing (e.g. 1333; with --min-size)."
    ),
    rpn_pre_nms: int = typer.Option(
        _D["rpn_pre_nms_top_n"],
        "--rpn-pre-nms",
        help="RPN proposals per level before NMS in training (torchvision: 2000).",
    ),
    rpn_post_nms: int = typer.Option(
        _D["rpn_post_nms_top_n"], "--rpn-post-nms", help="RPN proposals kept after NMS in training (torchvision: 2000)."
    ),
    rpn_batch: int = typer.Option(
        _D["rpn_batch_size_per_image"],
        "--rpn-batch",
        help="Anchors sampled per image for the RPN loss (torchvision: 256).",
    ),
    roi_batch: int = typer.Option(
        _D["box_batch_size_per_image"],
        "--roi-batch",
        help="Proposals sampled per image for the box/mask heads (torchvision: 512).",
    ),
    num_classes: int | None = typer.Option(
        None, "--num-classes", help="Classes incl. background (default 91: COCO ids are the labels)."
    ),
    val_ann_file: str | None = typer.Option(
        None, "--val-ann-file", help="COCO instances JSON of a validation set (with --val-images)."
    ),
    val_images: str | None = typer.Option(
        None, "--val-images", help="Image folder of the validation set (path or URL)."
    ),
    val_holdout: int = typer.Option(
        _D["val_holdout"],
        "--val-holdout",
        help="Hold out this many training images as the validation set (without --val-ann-file).",
    ),
    eval_every: int = typer.Option(
        _D["eval_every"], "--eval-every", help="COCO AP every N steps (0 = only at the end; needs a validation set)."
    ),
    eval_max_images: int | None = typer.Option(
        None, "--eval-max-images", help="Evaluate on at most this many validation images."
    ),
    checkpoint_every: int = typer.Option(
        _D["checkpoint_every"], "--checkpoint-every", help="Report a checkpoint every N steps (and at the end)."
    ),
    keep_checkpoints: int | None = typer.Option(
        _D["keep_checkpoints"], "--keep-checkpoints", help="Checkpoints kept (newest)."
    ),
    log_every: int = typer.Option(_D["log_every"], "--log-every", help="Write a metrics line every N steps."),
    max_failures: int = typer.Option(
        _D["max_failures"], "--max-failures", help="Worker failures retried from the last checkpoint (-1 = always)."
    ),
    seed: int = typer.Option(
        _D["seed"], "--seed", help="Seed of the initial weights, data order, fixations and flips."
    ),
    address: str | None = typer.Option(None, "--address", help=ADDRESS_HELP),
) -> None:
    """Train Mask R-CNN on foveated COCO with Ray Train (TorchTrainer, DDP; one GPU per worker where there are GPUs).

    Every training image is foveated on the device inside the training step by the analysis' own
    Foveator, at the policy's fixation (--fixation none trains the unfoveated control).

    Annotations and images may be local paths or fsspec URLs (s3://...); --out is a folder (on a
    cluster, one every node mounts).

    Checkpoints (OUT/ray_train/checkpoint_<step>/model.pt + meta.json) load directly with `fovea-ray
    extract --weights OUT`.

    Progress goes to the terminal and to OUT/metrics.jsonl: step, loss and its parts, lr, images/s,
    the foveation share of the step, and COCO box/mask AP at evaluations.

    Killing the run and rerunning the same command resumes from the last checkpoint; the step count continues.
    """
    from fovea_ray.train import train as run_training
    from fovea_ray.train.metrics import read_metrics

    if (val_ann_file is None) != (val_images is None):
        raise InputError("--val-ann-file and --val-images go together")
    cfg = TrainConfig(
        ann_file=str(ann_file),
        images=str(images),
        out=str(out),
        steps=steps,
        val_ann_file=None if val_ann_file is None else str(val_ann_file),
        val_images=None if val_images is None else str(val_images),
        val_holdout=val_holdout,
        num_classes=num_classes,
        arch=arch,
        weights=weights,
        backbone_weights=backbone_weights,
        trainable_layers=trainable_layers,
        min_size=min_size,
        max_size=max_size,
        rpn_pre_nms_top_n=rpn_pre_nms,
        rpn_post_nms_top_n=rpn_post_nms,
        rpn_batch_size_per_image=rpn_batch,
        box_batch_size_per_image=roi_batch,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        schedule=schedule,
        milestones=_D["milestones"] if milestones is None else _milestones(milestones),
        warmup_steps=warmup_steps,
        clip_grad_norm=clip_grad_norm or None,
        amp=amp,
        hflip=hflip,
        fixation=fixation,
        pixels_per_degree=ppd,
        workers=workers,
        use_gpu=gpu,
        cpus_per_worker=cpus_per_worker,
        loader_workers=loader_workers,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        log_every=log_every,
        eval_every=eval_every,
        eval_max_images=eval_max_images,
        max_failures=max_failures,
        seed=seed,
    )
    result = run_training(cfg, address=address)
    records = [r for r in read_metrics(result.out) if isinstance(r.get("loss"), (int, float))]
    if records:
        first, last = records[0], records[-1]
        typer.echo(
            f"loss: step {first['step']} {first['loss']:.4f} -> step {last['step']} {last['loss']:.4f} "
            f"({last['loss'] / first['loss']:.1%} of start)"
        )
    evals = [r for r in read_metrics(result.out) if "bbox_AP" in r]
    if evals:
        e = evals[-1]
        typer.echo(
            f"validation (step {e['step']}): bbox AP {e.get('bbox_AP')}, segm AP {e.get('segm_AP')} on "
            f"{e.get('val_images')} images"
        )
    typer.echo(f"checkpoint (step {result.step}): {result.checkpoint}")
    typer.echo(f"load it with: fovea-ray extract MANIFEST --weights {result.out} --arch {cfg.arch}")
