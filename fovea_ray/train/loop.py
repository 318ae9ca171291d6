"""The training step and the per-worker Ray Train loop.

:class:`StepRunner` is one optimizer step of Mask R-CNN on foveated images, with no Ray
in it: uint8 images go to the device, are flipped (augmentation), converted to float,
foveated there with the analysis' own :class:`~fovea_ray.foveation.Foveator` at the
policy's fixations, and fed to the model under AMP (CUDA only); SGD with momentum, the
schedule's learning rate, optional gradient clipping. Tests drive it directly.

:func:`train_loop_per_worker` is what each Ray Train worker runs: it builds the model
with :func:`fovea_ray.model.build_model` (so checkpoints fit extraction), resumes from the
newest checkpoint (Ray Train's own, or the one the driver found on disk), wraps the model
for DDP with ``ray.train.torch.prepare_model``, streams its shard of the data, logs
progress on rank 0, evaluates COCO AP (sharded over the ranks) and reports checkpoints
with ``ray.train.report``.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fovea_ray.errors import FoveaRayError, InputError
from fovea_ray.train.config import TrainConfig
from fovea_ray.train.fixation import draw_fixations, foveate_images
from fovea_ray.train.metrics import PhaseTimer
from fovea_ray.train.schedule import learning_rate

__all__ = ["CHECKPOINT_FORMAT", "StepRunner", "build_training_model", "checkpoint_meta", "train_loop_per_worker"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "fovea-ray/train-checkpoint/1"

_LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")


def build_training_model(cfg: TrainConfig, num_classes: int, *, load_init: bool = True) -> torch.nn.Module:
    """The Mask R-CNN to train, on the CPU, in train mode.

    Built by :func:`fovea_ray.model.build_model` (so its state dict is exactly what
    extraction loads), then: ImageNet backbone weights if given, torchvision's
    resize-in-the-model when ``min_size``/``max_size`` are set (the default keeps the
    native pixel scale, as the analysis does), and the run's RPN/ROI sampling sizes.
    ``load_init=False`` skips the initial weights (a resumed run loads its checkpoint).
    """
    from fovea_ray.model import build_model

    weights = cfg.weights if load_init else None
    model = build_model(
        cfg.arch, weights, cfg.canvas, num_classes=num_classes, seed=cfg.seed, trainable_layers=cfg.trainable_layers
    )
    if load_init and cfg.backbone_weights:
        load_backbone_weights(model, cfg.backbone_weights, cfg.arch)
    if cfg.min_size is not None:
        from torchvision.models.detection.transform import GeneralizedRCNNTransform

        t = model.transform
        model.transform = GeneralizedRCNNTransform(
            cfg.min_size, cfg.max_size, list(t.image_mean), list(t.image_std), size_divisible=t.size_divisible
        )
    # torchvision keeps these as plain attributes; its defaults are 2000/2000/256/512.
    model.rpn._pre_nms_top_n["training"] = cfg.rpn_pre_nms_top_n
    model.rpn._post_nms_top_n["training"] = cfg.rpn_post_nms_top_n
    model.rpn.fg_bg_sampler.batch_size_per_image = cfg.rpn_batch_size_per_image
    model.roi_heads.fg_bg_sampler.batch_size_per_image = cfg.box_batch_size_per_image
    model.train()
    return model


@torch.no_grad()
def calibrate_frozen_bn(model: torch.nn.Module, images: Sequence[torch.Tensor]) -> int:
    """Set the backbone's frozen batch-norm statistics from data; returns how many.

    A randomly initialised backbone with frozen batch norm (as :func:`build_model` makes
    it) normalises nothing: activations grow from stage to stage and training from
    scratch diverges. One forward pass over ``images`` (float (3, H, W) in [0, 1]) sets
    each frozen batch norm's ``running_mean``/``running_var`` to the statistics of its own
    input, layer by layer in execution order, so every normalisation starts at zero mean
    and unit variance: a data-dependent initialisation (Krähenbühl et al., ICLR 2016;
    Mishkin & Matas, "All you need is a good init", ICLR 2016). Only buffers change; the
    state dict keeps its keys, so checkpoints still load into ``build_model``.
    """
    from torchvision.ops.misc import FrozenBatchNorm2d

    def set_stats(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].float()
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))

    norms = [m for m in model.backbone.body.modules() if isinstance(m, FrozenBatchNorm2d)]
    hooks = [m.register_forward_pre_hook(set_stats) for m in norms]
    was_training = model.training
    try:
        model.eval()
        batch = model.transform(list(images))[0].tensors
        model.backbone.body(batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return len(norms)


def load_backbone_weights(model: torch.nn.Module, source: str, arch: str) -> None:
    """Load an ImageNet ResNet classification state dict into ``model.backbone.body``.

    ``source`` is a path (torchvision ``resnet101-*.pth``, any ResNet trained e.g. on
    foveated ImageNet, as the study's was, or a ``fovea-ray pretrain`` output folder,
    whose newest checkpoint is used and whose arch must match) or ``"torchvision"`` (ImageNet weights,
    downloaded). The classifier (``fc.*``) is dropped; every backbone tensor must be
    present with the right shape.
    """
    from fovea_ray.model import load_checkpoint
    from fovea_ray.model.build import load_state_dict_strict

    if source.lower() == "torchvision":
        from torchvision.models import ResNet50_Weights, ResNet101_Weights

        entry = (ResNet101_Weights if arch == "resnet101" else ResNet50_Weights).IMAGENET1K_V1
        try:
            state = entry.get_state_dict(progress=False, check_hash=True)
        except Exception as err:  # network errors differ by platform; all mean "not fetched"
            raise FoveaRayError(
                f"torchvision ImageNet {arch} weights could not be fetched from {entry.url} "
                f"({type(err).__name__}: {err}); on a machine without internet copy that file into "
                "the torch hub cache or pass its path as backbone weights"
            ) from err
    else:
        from fovea_ray.pretrain.checkpoint import find_pretrained, load_pretrained

        if find_pretrained(source) is not None:
            # A `fovea-ray pretrain` output folder: its newest checkpoint, same arch only.
            pre_arch, state, meta = load_pretrained(source)
            if pre_arch != arch:
                raise InputError(
                    f"{source}: pretrained {pre_arch} backbone (step {meta['step']}) cannot initialise a {arch} "
                    f"Mask R-CNN; pass --arch {pre_arch}"
                )
        else:
            state = load_checkpoint(source)
    body = model.backbone.body
    own = body.state_dict()
    state = {
        k: v
        for k, v in state.items()
        if not k.startswith("fc.") and (not k.endswith("num_batches_tracked") or k in own)
    }
    load_state_dict_strict(body, state, f"backbone weights {source}")


def _hflip(image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    width = image.shape[-1]
    target = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, 0], boxes[:, 2] = width - target["boxes"][:, 2], width - target["boxes"][:, 0]
    target["boxes"] = boxes
    if "masks" in target:
        target["masks"] = target["masks"].flip(-1)
    return image.flip(-1), target


class StepRunner:
    """One training step of Mask R-CNN on foveated images (no Ray involved).

    Parameters
    ----------
    model : torch.nn.Module
        the network to call (possibly DDP-wrapped), in train mode, on ``device``.
    cfg : TrainConfig
        the run's configuration (policy, schedule, AMP, clipping, flip).
    foveator : Foveator
        a :class:`~fovea_ray.foveation.Foveator` (unused for policy "none").
    device : torch.device
        where the step runs.
    rank : int, optional
        the worker's rank (seeds its fixations and flips).
    """

    def __init__(
        self, model: torch.nn.Module, cfg: TrainConfig, foveator: Any, device: torch.device, *, rank: int = 0
    ) -> None:
        self.model, self.cfg, self.foveator, self.device, self.rank = model, cfg, foveator, torch.device(device), rank
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise FoveaRayError("no trainable parameters (check trainable_layers)")
        self.optimizer = torch.optim.SGD(
            self.params, lr=cfg.base_lr(), momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.timer = PhaseTimer(self.device)

    def lr(self, step: int) -> float:
        c = self.cfg
        return learning_rate(
            step,
            base_lr=c.base_lr(),
            steps=c.steps,
            schedule=c.schedule,
            milestones=c.milestones,
            warmup_steps=c.warmup(),
            warmup_factor=c.warmup_factor,
        )

    def _step_seed(self, step: int) -> int:
        return ((self.cfg.seed * 1_000_003 + step) * 4099 + self.rank) % (2**63)

    def _generator(self, step: int) -> torch.Generator:
        # Fixations and flips depend on (seed, step, rank) only: a resumed run repeats them.
        return torch.Generator().manual_seed(self._step_seed(step))

    def _to_device(
        self, g: torch.Generator, images: Sequence[torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]]
    ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        dev_images, dev_targets = [], []
        for im, tg in zip(images, targets):
            im = im.to(self.device, non_blocking=True)
            tg = {k: v.to(self.device, non_blocking=True) for k, v in tg.items()}
            if self.cfg.hflip > 0 and torch.rand((), generator=g).item() < self.cfg.hflip:
                im, tg = _hflip(im, tg)
            dev_images.append(im.float().div_(255) if im.dtype == torch.uint8 else im.float())
            dev_targets.append(tg)
        return dev_images, dev_targets

    def _foveate(
        self, g: torch.Generator, images: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        fixations = draw_fixations(self.cfg.fixation, [tuple(im.shape[-2:]) for im in images], g)
        return foveate_images(self.foveator, images, fixations), fixations

    def prepare(
        self, step: int, images: Sequence[torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]]
    ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]], torch.Tensor | None]:
        """The model's input for ``step``: (images on the device, flipped, float, foveated;
        targets; fixations (B, 2) or None), exactly as :meth:`step` makes it."""
        g = self._generator(step)
        dev_images, dev_targets = self._to_device(g, images, targets)
        inputs, fixations = self._foveate(g, dev_images)
        return inputs, dev_targets, fixations

    def step(
        self, step: int, images: Sequence[torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Run optimizer step ``step`` (0-based); returns the loss tensors (on the device).

        Keys: ``loss`` and torchvision's components (``loss_classifier``, ``loss_box_reg``,
        ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``). Nothing is synchronised
        with the host here; read the values only when logging.
        """
        self.timer.mark("start")
        # torchvision samples RPN anchors and ROI proposals from the global RNG: seeding it
        # per step makes a resumed run draw what the uninterrupted run would have drawn.
        torch.manual_seed(self._step_seed(step) ^ 0x5EED)
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        g = self._generator(step)
        dev_images, targets = self._to_device(g, images, targets)
        self.timer.mark("loaded")
        inputs, _ = self._foveate(g, dev_images)
        self.timer.mark("foveated")
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.amp):
            loss_dict = self.model(inputs, targets)
        loss = sum(loss_dict.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.timer.mark("end")
        return {"loss": loss.detach(), **{k: v.detach() for k, v in loss_dict.items()}}

    def state_dict(self) -> dict[str, Any]:
        """Optimizer and grad-scaler state (what resuming needs besides the weights)."""
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler") and self.amp:
            self.scaler.load_state_dict(state["scaler"])


def checkpoint_meta(
    cfg: TrainConfig,
    step: int,
    *,
    model: torch.nn.Module,
    category_ids: Sequence[int],
    foveator: Any,
    world_size: int,
    metrics: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``meta.json`` of a checkpoint (see :mod:`fovea_ray.train.checkpoint`)."""
    import torchvision

    info = getattr(model, "fovea_ray_info", {})
    return {
        "format": CHECKPOINT_FORMAT,
        "step": int(step),
        "arch": cfg.arch,
        "num_classes": len(category_ids),
        "category_ids": [int(c) for c in category_ids],
        "fixation_policy": cfg.fixation,
        "pixels_per_degree": cfg.pixels_per_degree,
        "foveation": foveator.params() if (foveator is not None and cfg.fixation != "none") else None,
        "conventions": dict(info.get("conventions", {})),
        "canvas": list(cfg.canvas),
        "world_size": int(world_size),
        "global_batch": cfg.batch_size * int(world_size),
        "images_seen": int(step) * cfg.batch_size * int(world_size),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None},
        "config": cfg.to_dict(),
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__},
    }


def _pick_resume(paths: Sequence[str]) -> tuple[int, Any]:
    """(step, source) of the newest resumable checkpoint: Ray Train's or one on disk."""
    import ray.train

    from fovea_ray.train.checkpoint import read_meta

    best: tuple[int, Any] = (0, None)
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            meta = read_meta(d)
        if meta is not None:
            best = (int(meta["step"]), ckpt)
    for p in paths:
        meta = read_meta(p)
        if meta is not None and int(meta["step"]) > best[0]:
            best = (int(meta["step"]), Path(p))
    return best


def _load_resume(model: torch.nn.Module, source: Any) -> dict[str, Any] | None:
    """Load a checkpoint's weights into ``model``; returns its train state (optimizer...)."""
    from fovea_ray.model import load_checkpoint
    from fovea_ray.model.build import load_state_dict_strict
    from fovea_ray.train.checkpoint import MODEL_NAME, load_train_state

    def load_dir(d: str | Path) -> dict[str, Any] | None:
        load_state_dict_strict(model, load_checkpoint(Path(d) / MODEL_NAME), str(d))
        return load_train_state(d)

    if isinstance(source, Path):
        return load_dir(source)
    with source.as_directory() as d:
        return load_dir(d)


def _reduce_mean(values: torch.Tensor, world: int) -> torch.Tensor:
    import torch.distributed as dist

    if world > 1 and dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
        values /= world
    return values


def _gather(obj: Any, world: int) -> list[Any]:
    import torch.distributed as dist

    if world > 1 and dist.is_available() and dist.is_initialized():
        out: list[Any] = [None] * world
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def train_loop_per_worker(config: Mapping[str, Any]) -> None:
    """The Ray Train worker function (``TorchTrainer(train_loop_per_worker=...)``).

    ``config``: ``{"train": TrainConfig.to_dict(), "category_ids": [...],
    "resume_candidates": [checkpoint dirs, newest first]}``.
    """
    import ray.train
    import ray.train.torch

    from fovea_ray.foveation import Foveator
    from fovea_ray.train.checkpoint import write_checkpoint
    from fovea_ray.train.dataset import CocoInstances, LabelMap, StepSampler, collate, load_coco, split_holdout
    from fovea_ray.train.evaluate import coco_evaluate, predict
    from fovea_ray.train.metrics import MetricsLog

    cfg = TrainConfig.from_dict(config["train"])
    label_map = LabelMap(tuple(int(c) for c in config["category_ids"]))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if isinstance(device, list):
        device = device[0]
    if device.type == "cpu":
        torch.set_num_threads(cfg.cpus_per_worker)

    # Data: the same seeded split on every rank; each rank streams its own shard.
    coco = load_coco(cfg.ann_file)
    train_ids, held = split_holdout(coco.getImgIds(), cfg.val_holdout if cfg.val_ann_file is None else 0, cfg.seed)
    train_set = CocoInstances(coco, cfg.images, label_map, train_ids, train=True)

    start_step, source = _pick_resume(config.get("resume_candidates", []))
    model = build_training_model(cfg, label_map.num_classes, load_init=source is None)
    if source is None and cfg.calibrate_bn and not cfg.weights and not cfg.backbone_weights:
        # Same first images on every rank, so all ranks start from identical weights.
        calibrate_frozen_bn(model, [train_set[i][0].float().div_(255) for i in range(min(8, len(train_set)))])
    train_state = _load_resume(model, source) if source is not None else None
    info = model.fovea_ray_info
    wrapped = ray.train.torch.prepare_model(model)
    module = wrapped.module if hasattr(wrapped, "module") else wrapped
    module.fovea_ray_info = info
    foveator = Foveator(pixels_per_degree=cfg.pixels_per_degree) if cfg.fixation != "none" else None
    runner = StepRunner(wrapped, cfg, foveator, device, rank=rank)
    if train_state:
        runner.load_state_dict(train_state)

    sampler = StepSampler(
        len(train_set),
        batch_size=cfg.batch_size,
        rank=rank,
        world_size=world,
        seed=cfg.seed,
        start_step=start_step,
        steps=cfg.steps,
    )
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.loader_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    val_set = None
    if cfg.val_ann_file is not None:
        val_coco = load_coco(cfg.val_ann_file)
        val_set = CocoInstances(val_coco, cfg.val_images, label_map, train=False)
    elif held:
        val_set = CocoInstances(coco, cfg.images, label_map, held, train=False)
    val_indices = list(range(len(val_set))) if val_set is not None else []
    if cfg.eval_max_images is not None:
        val_indices = val_indices[: cfg.eval_max_images]

    mlog = MetricsLog(cfg.out, cfg.steps, resume_step=start_step) if rank == 0 else None
    if rank == 0 and start_step > 0:
        sys.stdout.write(f"resumed from step {start_step} ({source})\n")
        sys.stdout.flush()

    def evaluate() -> dict[str, Any]:
        results, done, errors = predict(
            module,
            val_set,
            val_indices[rank::world],
            foveator=foveator,
            policy=cfg.fixation,
            seed=cfg.seed,
            device=device,
            category_ids=label_map.category_ids,
            amp=runner.amp,
        )
        parts = _gather((results, done, errors), world)
        if rank != 0:
            return {}
        all_results = [r for p in parts for r in p[0]]
        all_ids = [i for p in parts for i in p[1]]
        for err in (e for p in parts for e in p[2]):
            log.warning("validation image skipped: %s", err)
        gt = val_set.coco
        return {**coco_evaluate(gt, all_results, all_ids), "val_images": len(all_ids)}

    last_log_time = time.perf_counter()
    steps_since_log = 0
    metrics: dict[str, Any] = {}
    step = start_step
    for step, (images, targets) in enumerate(loader, start=start_step):
        losses = runner.step(step, images, targets)
        steps_since_log += 1
        completed = step + 1
        eval_now = val_set is not None and (
            completed == cfg.steps or (cfg.eval_every > 0 and completed % cfg.eval_every == 0)
        )
        ckpt_now = completed == cfg.steps or completed % cfg.checkpoint_every == 0
        log_now = step % cfg.log_every == 0 or eval_now or ckpt_now
        if log_now:
            names = ["loss", *[k for k in _LOSS_KEYS if k in losses]]
            values = _reduce_mean(torch.stack([losses[k].float() for k in names]), world).tolist()
            phases = runner.timer.collect()
            elapsed = time.perf_counter() - last_log_time
            total = phases.get("total", 0.0)
            fov_ms = phases.get("loaded_to_foveated", 0.0)
            metrics = {
                "step": step,
                **dict(zip(names, values)),
                "lr": runner.optimizer.param_groups[0]["lr"],
                "images_per_s": steps_since_log * cfg.batch_size * world / max(elapsed, 1e-9),
                "step_ms": total / steps_since_log,
                "foveation_ms": fov_ms / steps_since_log,
                "foveation_share": fov_ms / total if total > 0 else 0.0,
                "data_ms": 1e3 * max(elapsed - total / 1e3, 0.0) / steps_since_log,
                "world_size": world,
                "images_seen": completed * cfg.batch_size * world,
            }
            if not math.isfinite(values[0]):
                raise FoveaRayError(
                    f"the training loss is not finite at step {step}; lower --lr or set --clip-grad-norm"
                )
            if eval_now:
                metrics.update(evaluate())
            if mlog is not None:
                mlog.write(metrics)
            steps_since_log = 0
        if ckpt_now:
            report = {
                "step": completed,
                **{k: v for k, v in metrics.items() if k != "step" and isinstance(v, (int, float))},
            }
            name = f"checkpoint_{completed:08d}"
            if rank == 0:
                with tempfile.TemporaryDirectory(prefix="fovea-ray-ckpt-") as tmp:
                    meta = checkpoint_meta(
                        cfg,
                        completed,
                        model=module,
                        category_ids=label_map.category_ids,
                        foveator=foveator,
                        world_size=world,
                        metrics=report,
                    )
                    write_checkpoint(tmp, module.state_dict(), meta, runner.state_dict())
                    ray.train.report(
                        report, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name
                    )
            else:
                ray.train.report(report, checkpoint=None, checkpoint_dir_name=name)
        if log_now or ckpt_now:
            last_log_time = time.perf_counter()
