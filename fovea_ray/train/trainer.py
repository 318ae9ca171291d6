"""The training driver: validate inputs, find where to resume, run Ray Train's TorchTrainer.

Output folder layout (``OUT`` = ``--out``)::

    OUT/train_config.json            the run's configuration (as given to the workers)
    OUT/metrics.jsonl                one JSON line per logged step (rank 0)
    OUT/ray_train/checkpoint_<step>/ model.pt, train_state.pt, meta.json
    OUT/ray_train/...                Ray Train's own run state (checkpoint manager snapshot)

Rerunning the same command after the driver died (killed, node lost) resumes from the
newest complete checkpoint beneath ``OUT``, with the step count continuing: the driver
lists them itself and hands them to the workers, and Ray Train V2 also restores its own
record of the run from ``RunConfig(storage_path=OUT, name="ray_train")``; the workers take
whichever is newer. Failures of workers during a run are retried from the latest
checkpoint up to ``FailureConfig(max_failures)`` times.

``fovea_ray.model.build_model(weights=OUT)`` and ``fovea-ray extract --weights OUT`` load
the newest checkpoint of such a folder directly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fovea_ray.errors import FoveaRayError, InputError
from fovea_ray.train.config import TrainConfig

__all__ = ["RUN_NAME", "TrainResult", "prepare_run", "train"]

log = logging.getLogger(__name__)

#: ``RunConfig(name=...)``: fixed, so a rerun finds (and resumes) the same run.
RUN_NAME = "ray_train"


@dataclass(frozen=True)
class TrainResult:
    """What a finished run left behind."""

    out: Path
    checkpoint: Path | None
    step: int
    metrics: dict[str, Any]
    resumed_from: int


def _abs(path: str | None) -> str | None:
    from fovea_ray.train.dataset import is_url

    if path is None or is_url(path):
        return path
    return str(Path(path).expanduser().resolve())


def _exists(location: str | Path) -> bool:
    from fovea_ray.train.dataset import is_url

    if is_url(location):
        import fsspec

        fs, p = fsspec.core.url_to_fs(str(location))
        return fs.exists(p)
    return Path(location).exists()


def prepare_run(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    """Check the inputs on the driver (so a bad file fails once, not once per retry) and
    build the workers' config: absolute paths, the label map, the resume candidates."""
    from fovea_ray.train.checkpoint import list_checkpoints
    from fovea_ray.train.dataset import CocoInstances, LabelMap, load_coco, split_holdout

    cfg = cfg.replace(
        ann_file=_abs(cfg.ann_file),
        images=_abs(cfg.images),
        out=_abs(cfg.out),
        val_ann_file=_abs(cfg.val_ann_file),
        val_images=_abs(cfg.val_images),
        weights=_abs(cfg.weights)
        if cfg.weights and cfg.weights.lower() not in ("none", "torchvision")
        else cfg.weights,
        backbone_weights=_abs(cfg.backbone_weights)
        if cfg.backbone_weights and cfg.backbone_weights.lower() != "torchvision"
        else cfg.backbone_weights,
    )
    coco = load_coco(cfg.ann_file)
    label_map = LabelMap.for_categories(coco.getCatIds(), cfg.num_classes, source=cfg.ann_file)
    train_ids, held = split_holdout(coco.getImgIds(), cfg.val_holdout if cfg.val_ann_file is None else 0, cfg.seed)
    train_set = CocoInstances(coco, cfg.images, label_map, train_ids, train=True)
    if len(train_set) == 0:
        raise InputError(f"{cfg.ann_file}: no training image has a usable (non-crowd, non-degenerate) object")
    missing = [train_set.image_path(i) for i in range(min(len(train_set), 3)) if not _exists(train_set.image_path(i))]
    if missing:
        raise InputError(
            f"{missing[0]}: image not found (is --images the folder the annotations' file_name values are relative to?)"
        )
    if cfg.val_ann_file is not None:
        val = load_coco(cfg.val_ann_file)
        foreign = sorted(set(val.getCatIds()) - set(label_map.labels()))
        if foreign:
            raise InputError(f"{cfg.val_ann_file}: categories {foreign[:5]} do not occur in the training annotations")
        if not _exists(cfg.val_images):
            raise InputError(f"{cfg.val_images}: validation image folder not found")
    for name in ("weights", "backbone_weights"):
        value = getattr(cfg, name)
        if value and value.lower() not in ("none", "torchvision") and not Path(value).exists():
            raise InputError(f"{value}: {name.replace('_', ' ')} not found")
    if cfg.backbone_weights and cfg.backbone_weights.lower() != "torchvision":
        from fovea_ray.pretrain.checkpoint import find_pretrained

        found = find_pretrained(cfg.backbone_weights)
        if found is not None and found[1].get("arch") != cfg.arch:
            raise InputError(
                f"{found[0]}: pretrained {found[1].get('arch')} backbone cannot initialise a {cfg.arch} Mask R-CNN; "
                f"pass --arch {found[1].get('arch')}"
            )

    if "://" in cfg.out:
        raise InputError(
            f"{cfg.out}: --out must be a folder path (on a cluster: one every node mounts, e.g. NFS/EFS); "
            "images and annotations may be URLs"
        )
    out = Path(cfg.out)
    existing = list_checkpoints(out)
    for _step, directory in existing[:1]:
        meta = json.loads((directory / "meta.json").read_text())
        for key, want in (
            ("arch", cfg.arch),
            ("num_classes", label_map.num_classes),
            ("fixation_policy", cfg.fixation),
        ):
            if meta.get(key) is not None and meta.get(key) != want:
                raise InputError(
                    f"{directory}: this output folder holds a run with {key}={meta.get(key)!r}, not {want!r}; "
                    "use a new --out (or the same options to resume)"
                )
    worker_config = {
        "train": cfg.to_dict(),
        "category_ids": list(label_map.category_ids),
        "resume_candidates": [str(d) for _, d in existing[:3]],
        "train_images": len(train_set),
        "val_images": len(held),
    }
    return cfg, worker_config


def _error_line(err: BaseException) -> str:
    failures = getattr(err, "worker_failures", None)
    if failures:
        rank, exc = sorted(failures.items())[0]
        cause = getattr(exc, "cause", None) or exc
        lines = [ln for ln in str(cause).strip().splitlines() if ln.strip()]
        return f"training failed on worker {rank}: {type(cause).__name__}: {lines[-1] if lines else ''}"
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    return f"training failed: {lines[-1] if lines else type(err).__name__}"


def train(cfg: TrainConfig, *, address: str | None = None, quiet_ray: bool = True) -> TrainResult:
    """Train (or resume) a run described by ``cfg``; returns the newest checkpoint.

    Connects to Ray (``address``, ``RAY_ADDRESS``, an existing connection, or a new
    local Ray), then runs ``TorchTrainer`` with ``ScalingConfig(num_workers, use_gpu)``
    (``use_gpu=None`` in the config means: when the cluster has GPUs),
    ``RunConfig(storage_path=OUT)``, ``FailureConfig(max_failures)`` and
    ``CheckpointConfig(num_to_keep)``.
    """
    from fovea_ray.train.checkpoint import list_checkpoints, read_meta

    cfg, worker_config = prepare_run(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    existing = list_checkpoints(out)
    resumed_from = existing[0][0] if existing else 0
    if existing and resumed_from >= cfg.steps:
        meta = read_meta(existing[0][1]) or {}
        print(f"{out}: already trained to step {resumed_from} (>= --steps {cfg.steps}); nothing to do", flush=True)
        return TrainResult(out, existing[0][1] / "model.pt", resumed_from, dict(meta.get("metrics", {})), resumed_from)
    (out / "train_config.json").write_text(json.dumps(worker_config["train"], indent=1, sort_keys=True))

    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from fovea_ray.cluster import connect
    from fovea_ray.train.loop import train_loop_per_worker

    connect(address, quiet=quiet_ray)
    use_gpu = cfg.use_gpu
    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) > 0
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
    run_config = ray.train.RunConfig(**run_kwargs)
    print(
        f"training {cfg.arch} on {worker_config['train_images']} images, {cfg.workers} worker(s) "
        f"({'GPU' if use_gpu else 'CPU'}), steps {resumed_from}->{cfg.steps}, fixation {cfg.fixation}, out {out}",
        flush=True,
    )
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=worker_config, scaling_config=scaling, run_config=run_config
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
        raise FoveaRayError(f"{out}: training ended without a checkpoint")
    step, directory = final[0]
    meta = read_meta(directory) or {}
    metrics = dict(getattr(result, "metrics", None) or meta.get("metrics", {}))
    return TrainResult(out, directory / "model.pt", step, metrics, resumed_from)
