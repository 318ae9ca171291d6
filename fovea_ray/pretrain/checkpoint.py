"""Pre-training checkpoints: ``train``'s directory format, and a torch-only loader.

A pre-training output folder holds ``OUT/ray_train/checkpoint_<step>/`` directories in
the format of :mod:`fovea_ray.train.checkpoint` (``model.pt``, ``train_state.pt``, then
``meta.json`` last). ``model.pt`` is the plain state dict of
``torchvision.models.<arch>(num_classes=K)`` (no ``module.`` prefix), so it loads into
torchvision directly, into ``fovea-ray train --backbone-weights`` (the ``fc`` classifier is
dropped there) and into a classification study's ``--weights``. ``meta.json`` carries
``{"kind": "pretrain", "format", "step", "arch", "num_classes", "classes" (sorted wnids),
"fixation_policy", "foveation", "pixels_per_degree", "input_size", "normalize":
{"mean", "std"}, "config", "metrics", "skipped_images", ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fovea_ray.errors import InputError
from fovea_ray.pretrain.config import IMAGENET_MEAN, IMAGENET_STD, PretrainConfig

__all__ = ["KIND", "PRETRAIN_FORMAT", "find_pretrained", "load_pretrained", "pretrain_meta"]

KIND = "pretrain"
PRETRAIN_FORMAT = "fovea-ray/pretrain-checkpoint/1"


def pretrain_meta(
    cfg: PretrainConfig,
    step: int,
    *,
    steps: int,
    classes: Sequence[str],
    foveator: Any,
    world_size: int,
    metrics: Mapping[str, Any],
    skipped_images: int,
) -> dict[str, Any]:
    """The ``meta.json`` of a pre-training checkpoint."""
    import torchvision

    return {
        "kind": KIND,
        "format": PRETRAIN_FORMAT,
        "step": int(step),
        "steps": int(steps),
        "arch": cfg.arch,
        "num_classes": len(classes),
        "classes": list(classes),
        "fixation_policy": cfg.fixation,
        "pixels_per_degree": cfg.pixels_per_degree,
        "foveation": foveator.params() if (foveator is not None and cfg.fixation != "none") else None,
        "input_size": cfg.input_size,
        "normalize": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "world_size": int(world_size),
        "global_batch": cfg.batch_size * int(world_size),
        "images_seen": int(step) * cfg.batch_size * int(world_size),
        "skipped_images": int(skipped_images),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None},
        "config": cfg.to_dict(),
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__},
    }


def find_pretrained(path: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """(checkpoint dir, meta) of the newest complete pre-training checkpoint at or beneath
    ``path``; ``None`` when there is none (``path`` is something else, e.g. a ``.pth``)."""
    from fovea_ray.train.checkpoint import list_checkpoints, read_meta

    path = Path(path)
    if path.is_file():
        # A file: only its own checkpoint directory counts (a torchvision .pth sitting in a
        # large folder must not trigger a search of that folder).
        meta = read_meta(path.parent) if path.name == "model.pt" else None
        return (path.parent, meta) if meta is not None and meta.get("kind") == KIND else None
    for _, directory in list_checkpoints(path):
        meta = read_meta(directory)
        if meta is not None and meta.get("kind") == KIND:
            return directory, meta
    return None


def load_pretrained(path: str | Path) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """(arch, state dict, meta) of the newest complete pre-training checkpoint under ``path``.

    ``path`` is a pre-training output folder, one of its checkpoint directories, or the
    ``model.pt`` in one. The state dict is read with ``torch.load(weights_only=True)`` and
    loads into ``torchvision.models.<arch>(num_classes=meta["num_classes"])``.
    """
    found = find_pretrained(path)
    if found is None:
        raise InputError(f"{path}: no complete fovea-ray pretrain checkpoint (checkpoint_*/model.pt + meta.json)")
    directory, meta = found
    from fovea_ray.train.checkpoint import MODEL_NAME

    state = torch.load(str(directory / MODEL_NAME), map_location="cpu", weights_only=True)
    return str(meta["arch"]), state, meta
