"""The pre-training driver: validate and index the data, find where to resume, run TorchTrainer.

Steps: :func:`prepare_run` (index ``train/`` and ``val/`` into columnar arrays, probe
images, check an existing output folder) -> :func:`pretrain` (connect to Ray, put the
index in the object store, one ordered dataset per rank, ``TorchTrainer``). The output
folder has ``train``'s layout::

    OUT/pretrain_config.json          the run's configuration
    OUT/metrics.jsonl                 one JSON line per logged step (rank 0)
    OUT/ray_train/checkpoint_<step>/  model.pt, train_state.pt, meta.json

Rerunning the same command resumes from the newest complete checkpoint (the data stream
starts at that step, so nothing before it is read again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fovea_ray.errors import FoveaRayError, InputError
from fovea_ray.pretrain.config import PretrainConfig
from fovea_ray.pretrain.index import ImageFolderIndex, index_imagefolder, join, probe_images

__all__ = ["PretrainPlan", "PretrainResult", "prepare_run", "pretrain"]


@dataclass(frozen=True)
class PretrainPlan:
    """What :func:`prepare_run` found: the checked config, the indices, where to resume."""

    cfg: PretrainConfig
    train: ImageFolderIndex
    val: ImageFolderIndex | None
    val_rows: np.ndarray | None
    steps: int
    start_step: int
    resume_candidates: tuple[str, ...]


@dataclass(frozen=True)
class PretrainResult:
    """What a finished run left behind."""

    out: Path
    checkpoint: Path | None
    step: int
    metrics: dict[str, Any]
    resumed_from: int


def _has_split(root: str, split: str) -> bool:
    location = join(root, split)
    if "://" in root:
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        return fs.isdir(path)
    return Path(location).expanduser().is_dir()


def prepare_run(cfg: PretrainConfig) -> PretrainPlan:
    """Check everything on the driver, before any worker starts (one-line errors)."""
    from fovea_ray.train.checkpoint import list_checkpoints, read_meta

    if "://" in cfg.out:
        raise InputError(f"{cfg.out}: --out must be a folder path (on a cluster: one every node mounts)")
    data = cfg.data if "://" in cfg.data else str(Path(cfg.data).expanduser().resolve())
    cfg = cfg.replace(data=data, out=str(Path(cfg.out).expanduser().resolve()))
    if "://" not in data and not Path(data).is_dir():
        raise InputError(f"{data}: ImageFolder root not found")
    train = index_imagefolder(data, "train")
    probe_images(train, cfg.probe_images)
    val, val_rows = None, None
    if _has_split(data, "val"):
        val = index_imagefolder(data, "val", classes=train.classes)
        probe_images(val, min(cfg.probe_images, 8))
        n = len(val)
        if cfg.eval_max_images is not None and cfg.eval_max_images < n:
            # A seeded subset spread over the classes (the index is sorted by class).
            val_rows = np.sort(np.random.default_rng([cfg.seed, 99]).permutation(n)[: cfg.eval_max_images])
        else:
            val_rows = np.arange(n)
    steps = cfg.steps_for(len(train))
    cfg = cfg.replace(steps=steps)

    existing = list_checkpoints(cfg.out)
    for _, directory in existing[:1]:
        meta = read_meta(directory) or {}
        for key, want in (
            ("kind", "pretrain"),
            ("arch", cfg.arch),
            ("fixation_policy", cfg.fixation),
            ("classes", list(train.classes)),
        ):
            if meta.get(key) != want:
                shown = meta.get(key) if key != "classes" else f"{len(meta.get(key) or [])} classes"
                wanted = want if key != "classes" else f"{len(want)} classes"
                raise InputError(
                    f"{directory}: this output folder holds a run with {key}={shown!r}, not {wanted!r}; "
                    "use a new --out (or the same options to resume)"
                )
    start = existing[0][0] if existing else 0
    return PretrainPlan(cfg, train, val, val_rows, steps, start, tuple(str(d) for _, d in existing[:3]))


def pretrain(cfg: PretrainConfig, *, address: str | None = None, quiet_ray: bool = True) -> PretrainResult:
    """Pre-train (or resume) the run ``cfg`` describes; returns the newest checkpoint.

    Ray Train: ``TorchTrainer`` with ``ScalingConfig(num_workers, use_gpu,
    resources_per_worker={"CPU": cpus_per_worker})``, ``RunConfig(storage_path=OUT,
    name="ray_train")``, ``FailureConfig(max_failures)``, ``CheckpointConfig(num_to_keep)``
    and ``DataConfig(datasets_to_split=[])`` with ``preserve_order`` (each rank has its own
    ordered stream; see :mod:`fovea_ray.pretrain.data`).
    """
    from fovea_ray.train.checkpoint import list_checkpoints, read_meta
    from fovea_ray.train.trainer import RUN_NAME, _error_line

    plan = prepare_run(cfg)
    cfg = plan.cfg
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if plan.start_step >= plan.steps:
        directory = list_checkpoints(out)[0][1]
        print(f"{out}: already trained to step {plan.start_step} (>= {plan.steps} steps); nothing to do", flush=True)
        meta = read_meta(directory) or {}
        return PretrainResult(
            out, directory / "model.pt", plan.start_step, dict(meta.get("metrics", {})), plan.start_step
        )
    (out / "pretrain_config.json").write_text(json.dumps(cfg.to_dict(), indent=1, sort_keys=True))

    import ray
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    from fovea_ray.cluster import connect
    from fovea_ray.pretrain.data import train_dataset, val_dataset
    from fovea_ray.pretrain.loop import pretrain_loop_per_worker, train_key, val_key

    connect(address, quiet=quiet_ray)
    use_gpu = cfg.use_gpu
    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) > 0

    if quiet_ray:
        # Datasets carry the driver's DataContext to the workers: no progress bars in the log.
        ray.data.DataContext.get_current().enable_progress_bars = False
    train_ref = ray.put(plan.train.table())
    datasets: dict[str, Any] = {}
    for rank in range(cfg.workers):
        datasets[train_key(rank)] = train_dataset(
            train_ref,
            plan.train.root,
            len(plan.train),
            rank=rank,
            world=cfg.workers,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            start_step=plan.start_step,
            steps=plan.steps,
            max_side=cfg.max_side,
            concurrency=cfg.read_concurrency,
        )
    if plan.val is not None:
        val_ref = ray.put(plan.val.table().take(plan.val_rows))
        for rank in range(cfg.workers):
            datasets[val_key(rank)] = val_dataset(
                val_ref,
                plan.val.root,
                len(plan.val_rows),
                rank=rank,
                world=cfg.workers,
                max_side=cfg.max_side,
                concurrency=cfg.read_concurrency,
            )
    from ray.data import ExecutionOptions

    # Each rank's rows must arrive in step order (exact resume); see fovea_ray.pretrain.data.
    options = ExecutionOptions(preserve_order=True)
    data_config = ray.train.DataConfig(datasets_to_split=[], execution_options=options)

    scaling = ray.train.ScalingConfig(
        num_workers=cfg.workers, use_gpu=bool(use_gpu), resources_per_worker={"CPU": cfg.cpus_per_worker}
    )
    run_kwargs: dict[str, Any] = dict(
        name=RUN_NAME,
        storage_path=str(out),
        failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
    )
    if hasattr(ray.train, "LoggingConfig") and ray.train.is_v2_enabled():
        run_kwargs["logging_config"] = ray.train.LoggingConfig(log_level="WARNING" if quiet_ray else "INFO")
    worker_config = {
        "pretrain": cfg.to_dict(),
        "classes": list(plan.train.classes),
        "steps": plan.steps,
        "data_start_step": plan.start_step,
        "resume_candidates": list(plan.resume_candidates),
        "has_val": plan.val is not None,
    }
    val_text = f", {len(plan.val_rows)} val" if plan.val is not None else ", no val/"
    print(
        f"pretraining {cfg.arch} on {len(plan.train)} images of {len(plan.train.classes)} classes{val_text}, "
        f"{cfg.workers} worker(s) ({'GPU' if use_gpu else 'CPU'}), steps {plan.start_step}->{plan.steps} "
        f"({plan.steps * cfg.global_batch() / len(plan.train):.2f} epochs), fixation {cfg.fixation}, out {out}",
        flush=True,
    )
    trainer = TorchTrainer(
        pretrain_loop_per_worker,
        train_loop_config=worker_config,
        scaling_config=scaling,
        run_config=ray.train.RunConfig(**run_kwargs),
        datasets=datasets,
        dataset_config=data_config,
    )
    try:
        result = trainer.fit()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001 - Ray wraps worker errors; show the cause in one line
        if isinstance(err, FoveaRayError):
            raise
        raise FoveaRayError(
            _error_line(err) + f" (checkpoints so far are in {out}; rerun the same command to resume)"
        ) from err
    final = list_checkpoints(out)
    if not final:
        raise FoveaRayError(f"{out}: pre-training ended without a checkpoint")
    step, directory = final[0]
    meta = read_meta(directory) or {}
    metrics = dict(getattr(result, "metrics", None) or meta.get("metrics", {}))
    return PretrainResult(out, directory / "model.pt", step, metrics, plan.start_step)
