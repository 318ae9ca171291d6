"""Training checkpoints: the directory format shared with extraction.

A checkpoint is a directory holding

- ``model.pt``: the plain torchvision MaskRCNN state dict (tensors only, no ``module.``
  prefix), readable with ``torch.load(weights_only=True)`` and by
  :func:`fovea_ray.model.build_model` (``weights=`` the directory or any folder above it);
- ``train_state.pt``: optimizer (and AMP grad-scaler) state, tensors and numbers only,
  needed only to resume;
- ``meta.json``: ``{"step", "arch", "num_classes", "fixation_policy", "category_ids",
  "conventions", "foveation", "config", "metrics", ...}``, written last, so a directory
  with a readable ``meta.json`` is complete.

Ray Train persists these directories under ``OUT/<run name>/checkpoint_<step>/``; the
functions here find and read them without Ray, so a driver can decide where to resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "META_NAME",
    "MODEL_NAME",
    "STATE_NAME",
    "list_checkpoints",
    "load_train_state",
    "read_meta",
    "write_checkpoint",
]

MODEL_NAME = "model.pt"
STATE_NAME = "train_state.pt"
META_NAME = "meta.json"


def write_checkpoint(
    directory: str | Path,
    model_state: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    train_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory (``meta.json`` last) and return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").clone() for k, v in model_state.items()}
    bad = [k for k in state if k.startswith("module.")]
    if bad:
        raise ValueError(f"state dict keys carry a wrapper prefix ({bad[0]}); save the unwrapped model")
    torch.save(state, directory / MODEL_NAME)
    if train_state is not None:
        torch.save(dict(train_state), directory / STATE_NAME)
    tmp = directory / (META_NAME + ".tmp")
    tmp.write_text(json.dumps(dict(meta), indent=1, sort_keys=True))
    os.replace(tmp, directory / META_NAME)
    return directory


def read_meta(directory: str | Path) -> dict[str, Any] | None:
    """The checkpoint's ``meta.json`` as a dict, or ``None`` when absent or unreadable."""
    path = Path(directory) / META_NAME
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        return None
    return meta


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoint directories beneath ``root`` as (step, dir), newest step first.

    Complete means ``model.pt`` and a readable ``meta.json`` with an integer ``step``;
    a directory that a killed run left half-copied is not listed.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for model_file in root.rglob(MODEL_NAME):
        meta = read_meta(model_file.parent)
        if meta is not None and model_file.is_file():
            found.append((int(meta["step"]), model_file.parent))
    return sorted(found, key=lambda item: (item[0], str(item[1])), reverse=True)


def load_train_state(directory: str | Path) -> dict[str, Any] | None:
    """Optimizer/scaler state of a checkpoint (safe loading), or ``None`` if it has none."""
    path = Path(directory) / STATE_NAME
    if not path.is_file():
        return None
    return torch.load(str(path), map_location="cpu", weights_only=True)
