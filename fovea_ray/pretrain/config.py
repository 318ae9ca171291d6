"""The pre-training run's configuration: one frozen, JSON-able record.

It travels from the CLI to every Ray Train worker and into every checkpoint's
``meta.json``, as :class:`fovea_ray.train.TrainConfig` does for ``train``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fovea_ray.errors import InputError
from fovea_ray.train.config import FIXATION_POLICIES

__all__ = ["ARCHS", "IMAGENET_MEAN", "IMAGENET_STD", "PretrainConfig"]

#: Classifier backbones. resnet101 is the study's; resnet50 the common alternative;
#: resnet18 exists for fast CPU tests and demos (``train`` cannot take it as a backbone).
ARCHS = ("resnet101", "resnet50", "resnet18")
#: Input normalisation (torchvision's ImageNet statistics, RGB, for inputs in [0, 1]);
#: the same as the Mask R-CNN transform's, so the backbone sees what it was trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pre-training run (all fields JSON-able).

    Parameters
    ----------
    data:
        ImageFolder root holding ``train/<class>/*`` (and optionally ``val/<class>/*``): a
        path or an fsspec URL.
    out:
        Output folder (checkpoints, ``metrics.jsonl``); on a cluster one every node mounts.
    arch:
        One of :data:`ARCHS`.
    steps, epochs:
        Optimizer steps; ``epochs`` (if given) sets ``steps = ceil(epochs x N / global batch)``
        on the driver once the training set is indexed.
    batch_size:
        Images per worker per step.
    lr:
        Peak learning rate; ``None`` = 0.1 x global batch / 256 (Goyal et al. 2017).
    momentum, nesterov, weight_decay:
        SGD; weight decay applies to conv and linear weights only, not to batch-norm
        parameters or biases (the standard recipe: Goyal et al. 2017; He et al., "Bag of
        Tricks", CVPR 2019).
    warmup_steps, warmup_factor:
        Linear warm-up (``None`` = 5% of the run), then cosine decay to 0.
    label_smoothing:
        Cross-entropy label smoothing (Szegedy et al., CVPR 2016; 0.1 as torchvision's recipe).
    amp:
        bfloat16 autocast on GPU workers (no loss scaling is needed with bfloat16).
    input_size:
        Side of the square network input after the random-resized crop (224 on ImageNet).
    crop_scale, crop_ratio:
        Random-resized-crop area fraction and aspect ranges (Szegedy et al. 2015).
    hflip:
        Probability of a horizontal flip per image.
    eval_resize:
        Validation: the shorter side is resized to ``input_size / eval_crop`` and the centre
        ``input_size`` square is kept (``eval_crop`` = 0.875: 256 -> 224).
    max_side:
        Decoded images whose longer side exceeds this are downscaled in the CPU task
        (aspect kept) to bound the bytes sent to the GPU; ``None`` = never.
    fixation, pixels_per_degree:
        Foveation (as ``train``): "center", "uniform" or "none" (the unfoveated control).
    workers, use_gpu, cpus_per_worker:
        Ray Train scaling (``cpus_per_worker`` may be fractional, e.g. 0.5, so Ray Data's
        read tasks run beside the workers on a small machine).
    torch_threads:
        Torch threads per CPU worker.
    checkpoint_every, keep_checkpoints, log_every, eval_every, eval_max_images, max_failures:
        Run control (``eval_every`` 0 = at the end only).
    read_concurrency:
        Parallel Ray Data decode tasks per worker's stream (``None`` = Ray decides).
    probe_images:
        Images decoded on the driver before training (spread over the classes), so
        unreadable data fails before any worker starts.
    seed:
        Seed of the initial weights, the data order, fixations, crops and flips.
    """

    data: str
    out: str
    arch: str = "resnet101"
    steps: int = 1000
    epochs: float | None = None
    batch_size: int = 32
    lr: float | None = None
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    warmup_steps: int | None = None
    warmup_factor: float = 0.01
    label_smoothing: float = 0.1
    amp: bool = True
    input_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    eval_crop: float = 0.875
    max_side: int | None = 512
    fixation: str = "center"
    pixels_per_degree: float = 30.0
    workers: int = 1
    use_gpu: bool | None = None
    cpus_per_worker: float = 1.0
    torch_threads: int = 1
    checkpoint_every: int = 1000
    keep_checkpoints: int | None = 3
    log_every: int = 10
    eval_every: int = 0
    eval_max_images: int | None = None
    max_failures: int = 3
    read_concurrency: int | None = None
    probe_images: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise InputError(f"pretrain config: {msg}")

        need(self.arch in ARCHS, f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        need(isinstance(self.steps, int) and self.steps >= 1, f"steps must be >= 1, got {self.steps!r}")
        need(self.epochs is None or self.epochs > 0, f"epochs must be > 0, got {self.epochs}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        need(not self.nesterov or self.momentum > 0, "nesterov needs momentum > 0")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.warmup_steps is None or self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(0 < self.warmup_factor <= 1, f"warmup_factor must be in (0, 1], got {self.warmup_factor}")
        need(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        need(self.input_size >= 16, f"input_size must be >= 16, got {self.input_size}")
        need(
            len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
            f"crop_scale must be 0 < low <= high <= 1, got {self.crop_scale}",
        )
        need(
            len(self.crop_ratio) == 2 and 0 < self.crop_ratio[0] <= self.crop_ratio[1],
            f"crop_ratio must be 0 < low <= high, got {self.crop_ratio}",
        )
        need(0 <= self.hflip <= 1, f"hflip must be a probability, got {self.hflip}")
        need(0 < self.eval_crop <= 1, f"eval_crop must be in (0, 1], got {self.eval_crop}")
        need(self.max_side is None or self.max_side >= self.input_size, "max_side must be >= input_size")
        need(
            self.fixation in FIXATION_POLICIES,
            f"fixation must be one of {', '.join(FIXATION_POLICIES)}, got {self.fixation!r}",
        )
        need(self.pixels_per_degree > 0, f"pixels_per_degree must be > 0, got {self.pixels_per_degree}")
        need(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        need(self.cpus_per_worker > 0, f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        need(self.torch_threads >= 1, f"torch_threads must be >= 1, got {self.torch_threads}")
        need(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        need(
            self.keep_checkpoints is None or self.keep_checkpoints >= 1,
            f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}",
        )
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        need(self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}")
        need(self.max_failures >= -1, f"max_failures must be >= -1, got {self.max_failures}")
        need(self.probe_images >= 0, f"probe_images must be >= 0, got {self.probe_images}")
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
        object.__setattr__(self, "crop_ratio", tuple(float(v) for v in self.crop_ratio))

    def global_batch(self) -> int:
        """Images per optimizer step over all workers."""
        return self.batch_size * self.workers

    def base_lr(self) -> float:
        """The peak learning rate (explicit, or the linear scaling rule's 0.1 per 256 images)."""
        return float(self.lr) if self.lr is not None else 0.1 * self.global_batch() / 256

    def warmup(self) -> int:
        """Warm-up steps: as given, else 5% of the run."""
        return self.warmup_steps if self.warmup_steps is not None else self.steps // 20

    def steps_for(self, n_images: int) -> int:
        """``steps``, or ``ceil(epochs x n_images / global batch)`` when ``epochs`` is set."""
        if self.epochs is None:
            return self.steps
        return max(1, math.ceil(self.epochs * n_images / self.global_batch()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["crop_scale"] = list(self.crop_scale)
        out["crop_ratio"] = list(self.crop_ratio)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PretrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo should not pass)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"pretrain config: unknown keys {', '.join(unknown)}")
        values = dict(data)
        for key in ("crop_scale", "crop_ratio"):
            if key in values and values[key] is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def replace(self, **changes: Any) -> PretrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
