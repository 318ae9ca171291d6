"""The per-worker Ray Train loop of ``fovea-ray pretrain``.

Each worker builds ``torchvision.models.<arch>`` from the seed, resumes from the newest
checkpoint (Ray Train's own or the one the driver found on disk, as ``train`` does),
wraps it for DDP with ``ray.train.torch.prepare_model``, streams its own rows with
``ray.train.get_dataset_shard("train_r<rank>")`` (see :mod:`fovea_ray.pretrain.data`),
runs :class:`~fovea_ray.pretrain.step.ClassifierStep`, logs ``metrics.jsonl`` on rank 0,
evaluates top-1/top-5 over every rank's validation rows and reports checkpoints with
``ray.train.report``.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from fovea_ray.errors import FoveaRayError
from fovea_ray.pretrain.config import PretrainConfig

__all__ = ["pretrain_loop_per_worker", "train_key", "val_key"]


def train_key(rank: int) -> str:
    """The name of rank ``rank``'s training dataset."""
    return f"train_r{rank}"


def val_key(rank: int) -> str:
    """The name of rank ``rank``'s validation dataset."""
    return f"val_r{rank}"


def _all_reduce_sum(values: torch.Tensor, world: int) -> torch.Tensor:
    import torch.distributed as dist

    if world > 1 and dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
    return values


def _batches(shard: Any, batch_size: int, prefetch: int) -> Iterator[dict[str, np.ndarray]]:
    return iter(
        shard.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=prefetch, drop_last=False)
    )


def _usable(batch: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, int]:
    """(images, labels, rows, skipped) with the unreadable rows of a batch dropped."""
    ok = np.asarray(batch["ok"], dtype=bool)
    images = [batch["image"][i] for i in np.flatnonzero(ok)]
    return images, np.asarray(batch["label"])[ok], np.asarray(batch["row"])[ok], int((~ok).sum())


def _skipped_at(source: Any) -> int:
    """``skipped_images`` recorded in the resume checkpoint (a directory or a Ray Checkpoint)."""
    from pathlib import Path

    from fovea_ray.train.checkpoint import read_meta

    if isinstance(source, Path):
        meta = read_meta(source)
    else:
        with source.as_directory() as d:
            meta = read_meta(d)
    return int((meta or {}).get("skipped_images", 0))


def pretrain_loop_per_worker(config: Mapping[str, Any]) -> None:
    """The Ray Train worker function (``TorchTrainer(train_loop_per_worker=...)``).

    ``config``: ``{"pretrain": PretrainConfig.to_dict(), "classes": [...], "steps": N,
    "data_start_step": s, "resume_candidates": [dirs], "has_val": bool}``.
    """
    import ray.train
    import ray.train.torch

    from fovea_ray.foveation import Foveator
    from fovea_ray.pretrain.checkpoint import pretrain_meta
    from fovea_ray.pretrain.step import ClassifierStep, build_classifier
    from fovea_ray.train.checkpoint import write_checkpoint
    from fovea_ray.train.loop import _load_resume, _pick_resume
    from fovea_ray.train.metrics import MetricsLog

    cfg = PretrainConfig.from_dict(config["pretrain"])
    classes = list(config["classes"])
    steps = int(config["steps"])
    data_start = int(config["data_start_step"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if isinstance(device, list):
        device = device[0]
    if device.type == "cpu":
        torch.set_num_threads(cfg.torch_threads)

    start_step, source = _pick_resume(config.get("resume_candidates", []))
    if start_step < data_start:
        raise FoveaRayError(f"resume step {start_step} is older than the data stream's start {data_start}")
    model = build_classifier(cfg.arch, len(classes), cfg.seed)
    train_state = _load_resume(model, source) if source is not None else None
    wrapped = ray.train.torch.prepare_model(model)
    module = wrapped.module if hasattr(wrapped, "module") else wrapped
    foveator = Foveator(pixels_per_degree=cfg.pixels_per_degree) if cfg.fixation != "none" else None
    runner = ClassifierStep(wrapped, cfg, foveator, device, steps=steps, rank=rank)
    if train_state:
        runner.load_state_dict(train_state)

    batches = _batches(ray.train.get_dataset_shard(train_key(rank)), cfg.batch_size, prefetch=2)
    # A restart inside one fit (worker lost) resumes from a checkpoint newer than the
    # stream's start: read past the steps already done (rare; costs their decoding only).
    for _ in range(start_step - data_start):
        next(batches)
    val_shard = ray.train.get_dataset_shard(val_key(rank)) if config.get("has_val") else None

    mlog = MetricsLog(cfg.out, steps, resume_step=start_step) if rank == 0 else None
    if rank == 0 and start_step > 0:
        sys.stdout.write(f"resumed from step {start_step} ({source})\n")
        sys.stdout.flush()

    def evaluate() -> dict[str, Any]:
        totals = torch.zeros(3, device=device)
        skipped = 0
        for batch in _batches(val_shard, cfg.batch_size, prefetch=1):
            images, labels, rows, bad = _usable(batch)
            skipped += bad
            totals += runner.evaluate(images, labels, rows)
        top1, top5, n = _all_reduce_sum(totals, world).tolist()
        return {"val_top1": top1 / max(n, 1), "val_top5": top5 / max(n, 1), "val_images": int(n)}

    # Unreadable images count over the whole run: a resumed run starts from the checkpoint's count.
    skipped_total = _skipped_at(source) if (source is not None and rank == 0) else 0
    last_log_time = time.perf_counter()
    window = torch.zeros(4, dtype=torch.float64)  # loss sum, correct, images, steps since the last line
    metrics: dict[str, Any] = {}
    for step in range(start_step, steps):
        images, labels, _, bad = _usable(next(batches))
        skipped_total += bad
        out = runner.step(step, images, labels)
        completed = step + 1
        eval_now = val_shard is not None and (
            completed == steps or (cfg.eval_every > 0 and completed % cfg.eval_every == 0)
        )
        ckpt_now = completed == steps or completed % cfg.checkpoint_every == 0
        log_now = step % cfg.log_every == 0 or eval_now or ckpt_now
        if log_now:
            # One reduction per logged step: the loss of this step (mean over ranks), its
            # top-1 on the training batch, images since the last line, skipped so far.
            vals = torch.stack(
                [
                    out["loss"].float().cpu(),
                    out["top1"].float().cpu(),
                    torch.tensor(float(len(images))),
                    torch.tensor(float(skipped_total)),
                ]
            ).double()
            window_images = torch.tensor([float(window[2]) + len(images)], dtype=torch.float64)
            red = _all_reduce_sum(torch.cat([vals, window_images]).to(device), world).cpu().tolist()
            loss = red[0] / world
            phases = runner.timer.collect()
            elapsed = time.perf_counter() - last_log_time
            total = phases.get("total", 0.0)
            fov_ms = phases.get("loaded_to_foveated", 0.0)
            n_steps = float(window[3]) + 1
            metrics = {
                "step": step,
                "loss": loss,
                "train_top1": red[1] / max(red[2], 1),
                "lr": runner.optimizer.param_groups[0]["lr"],
                "images_per_s": red[4] / max(elapsed, 1e-9),
                "step_ms": total / n_steps,
                "foveation_ms": fov_ms / n_steps,
                "foveation_share": fov_ms / total if total > 0 else 0.0,
                "data_ms": 1e3 * max(elapsed - total / 1e3, 0.0) / n_steps,
                "skipped_images": int(red[3]),
                "world_size": world,
                "images_seen": completed * cfg.batch_size * world,
            }
            if not math.isfinite(loss):
                raise FoveaRayError(f"the training loss is not finite at step {step}; lower --lr")
            if eval_now:
                metrics.update(evaluate())
            if mlog is not None:
                mlog.write(metrics)
            window.zero_()
            last_log_time = time.perf_counter()
        else:
            window += torch.tensor([0.0, 0.0, float(len(images)), 1.0], dtype=torch.float64)
        if ckpt_now:
            report = {
                "step": completed,
                **{k: v for k, v in metrics.items() if k != "step" and isinstance(v, (int, float))},
            }
            name = f"checkpoint_{completed:08d}"
            if rank == 0:
                with tempfile.TemporaryDirectory(prefix="fovea-ray-pretrain-") as tmp:
                    meta = pretrain_meta(
                        cfg,
                        completed,
                        steps=steps,
                        classes=classes,
                        foveator=foveator,
                        world_size=world,
                        metrics=report,
                        skipped_images=int(metrics.get("skipped_images", skipped_total)),
                    )
                    write_checkpoint(tmp, module.state_dict(), meta, runner.state_dict())
                    ray.train.report(
                        report, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name
                    )
            else:
                ray.train.report(report, checkpoint=None, checkpoint_dir_name=name)
            last_log_time = time.perf_counter()
