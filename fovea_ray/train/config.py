"""The training run's configuration: one frozen, JSON-able record.

The same record travels from the CLI to every Ray Train worker (as the
``train_loop_config`` dict) and into every checkpoint's ``meta.json``, so a checkpoint
says exactly how it was made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fovea_ray.errors import InputError

__all__ = ["FIXATION_POLICIES", "SCHEDULES", "TrainConfig"]

#: Where each training image is fixated (see :mod:`fovea_ray.train.fixation`).
FIXATION_POLICIES = ("center", "uniform", "none")
#: Learning-rate schedules after warm-up (see :mod:`fovea_ray.train.schedule`).
SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (all fields JSON-able).

    Data:
        ann_file, images: COCO instances JSON and its image folder (training set).
        val_ann_file, val_images: an optional separate validation set.
        val_holdout: number of training images held out as the validation set (used when
            no ``val_ann_file`` is given; 0 = no validation).
        num_classes: classifier outputs including background; ``None`` = 91 (COCO ids used
            directly as labels) when every category id is at most 90, else one per category.
    Model:
        arch: ``resnet101`` (the study's) or ``resnet50``.
        weights: initial Mask R-CNN weights for :func:`fovea_ray.model.build_model`
            (``None`` = random from ``seed``, a checkpoint path, or ``"torchvision"``).
        backbone_weights: an ImageNet ResNet classification state dict (path) or
            ``"torchvision"``, loaded into the backbone; ``None`` = no backbone init.
        trainable_layers: backbone stages that train (0-5; 5 = all).
        canvas: the canvas recorded in the model (the analysis' input size).
        min_size, max_size: resize images inside the model as torchvision's recipe does
            (e.g. 800/1333); ``None`` keeps the native pixel scale, which is how the
            analysis feeds the network.
        rpn_pre_nms_top_n, rpn_post_nms_top_n, rpn_batch_size_per_image,
        box_batch_size_per_image: torchvision's training-time RPN/ROI sampling sizes
            (defaults are torchvision's; smaller values make tiny CPU runs fast).
    Optimisation:
        steps, batch_size (per worker), lr (``None`` = 0.02 x global batch / 16, the linear
        scaling rule of Goyal et al. 2017), momentum, weight_decay, schedule ("step": x0.1
        at ``milestones`` (fractions of ``steps``); "cosine"), warmup_steps (``None`` = a
        tenth of the run, at most 500), warmup_factor, clip_grad_norm (total gradient norm
        cap; ``None``/0 = off; the default 10 keeps the start of a from-scratch run, whose
        features are not yet normalised, from diverging), amp (float16 autocast +
        GradScaler, GPU only), hflip (probability of a horizontal flip).
        calibrate_bn: set a random backbone's frozen batch-norm statistics from the first
            training images (only when neither weights nor backbone_weights are given).
    Foveation:
        fixation ("center", "uniform" or "none" = the unfoveated control),
        pixels_per_degree.
    Run:
        workers, use_gpu (``None`` = when the cluster has GPUs), cpus_per_worker,
        loader_workers (DataLoader processes per worker), checkpoint_every, keep_checkpoints,
        log_every, eval_every (0 = only at the end), eval_max_images, max_failures, seed.
    """

    ann_file: str
    images: str
    out: str
    steps: int = 1000
    val_ann_file: str | None = None
    val_images: str | None = None
    val_holdout: int = 0
    num_classes: int | None = None
    arch: str = "resnet101"
    weights: str | None = None
    backbone_weights: str | None = None
    trainable_layers: int = 3
    canvas: tuple[int, int] = (640, 640)
    min_size: int | None = None
    max_size: int | None = None
    rpn_pre_nms_top_n: int = 2000
    rpn_post_nms_top_n: int = 2000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    batch_size: int = 2
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[float, ...] = (2 / 3, 8 / 9)
    warmup_steps: int | None = None
    warmup_factor: float = 1e-3
    clip_grad_norm: float | None = 10.0
    amp: bool = True
    calibrate_bn: bool = True
    hflip: float = 0.5
    fixation: str = "center"
    pixels_per_degree: float = 30.0
    workers: int = 1
    use_gpu: bool | None = None
    cpus_per_worker: int = 1
    loader_workers: int = 2
    checkpoint_every: int = 500
    keep_checkpoints: int | None = 3
    log_every: int = 1
    eval_every: int = 0
    eval_max_images: int | None = None
    max_failures: int = 3
    seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise InputError(f"train config: {msg}")

        need(isinstance(self.steps, int) and self.steps >= 1, f"steps must be >= 1, got {self.steps!r}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        need(self.cpus_per_worker >= 1, f"cpus_per_worker must be >= 1, got {self.cpus_per_worker}")
        need(self.loader_workers >= 0, f"loader_workers must be >= 0, got {self.loader_workers}")
        need(self.arch in ("resnet101", "resnet50"), f"arch must be resnet101 or resnet50, got {self.arch!r}")
        need(0 <= self.trainable_layers <= 5, f"trainable_layers must be 0-5, got {self.trainable_layers}")
        need(
            self.fixation in FIXATION_POLICIES,
            f"fixation must be one of {', '.join(FIXATION_POLICIES)}, got {self.fixation!r}",
        )
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        need(
            all(0 < m <= 1 for m in self.milestones),
            f"milestones are fractions of steps in (0, 1], got {self.milestones}",
        )
        need(self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.warmup_steps is None or self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(0 < self.warmup_factor <= 1, f"warmup_factor must be in (0, 1], got {self.warmup_factor}")
        need(
            self.clip_grad_norm is None or self.clip_grad_norm >= 0,
            f"clip_grad_norm must be >= 0 (0 = off), got {self.clip_grad_norm}",
        )
        need(0 <= self.hflip <= 1, f"hflip must be a probability, got {self.hflip}")
        need(self.pixels_per_degree > 0, f"pixels_per_degree must be > 0, got {self.pixels_per_degree}")
        need(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        need(
            self.keep_checkpoints is None or self.keep_checkpoints >= 1,
            f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}",
        )
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        need(self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}")
        need(self.val_holdout >= 0, f"val_holdout must be >= 0, got {self.val_holdout}")
        need(self.max_failures >= -1, f"max_failures must be >= -1, got {self.max_failures}")
        need(self.num_classes is None or self.num_classes >= 2, f"num_classes must be >= 2, got {self.num_classes}")
        need((self.min_size is None) == (self.max_size is None), "give both min_size and max_size, or neither")
        need(
            self.min_size is None or 0 < self.min_size <= self.max_size,
            f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}",
        )
        need(
            (self.val_ann_file is None) == (self.val_images is None),
            "give both val_ann_file and val_images, or neither",
        )
        for name in ("rpn_pre_nms_top_n", "rpn_post_nms_top_n", "rpn_batch_size_per_image", "box_batch_size_per_image"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        object.__setattr__(self, "canvas", tuple(int(v) for v in self.canvas))
        object.__setattr__(self, "milestones", tuple(float(v) for v in self.milestones))

    def warmup(self) -> int:
        """Warm-up steps: as given, else a tenth of the run, at most 500."""
        return self.warmup_steps if self.warmup_steps is not None else min(500, self.steps // 10)

    def global_batch(self) -> int:
        """Images per optimizer step over all workers."""
        return self.batch_size * self.workers

    def base_lr(self) -> float:
        """The peak learning rate (explicit, or the linear scaling rule's 0.02 per 16 images)."""
        return float(self.lr) if self.lr is not None else 0.02 * self.global_batch() / 16

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["canvas"] = list(self.canvas)
        out["milestones"] = list(self.milestones)
        out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo should not pass)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"train config: unknown keys {', '.join(unknown)}")
        values = dict(data)
        for key in ("canvas", "milestones"):
            if key in values and values[key] is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
