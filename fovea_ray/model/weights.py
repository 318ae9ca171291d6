"""Safe checkpoint loading, checkpoint discovery and weight checksums.

Checkpoints are read without running arbitrary code: torch files go through
``torch.load(weights_only=True)``, safetensors files through ``safetensors`` (when it is
installed) and detectron2 ``.pkl`` files through a restricted unpickler that accepts only
numpy arrays and plain containers. A checkpoint that needs anything else (a pickled
model object, a custom class) is refused with a message that says why.

Layouts understood by :func:`load_checkpoint`:

- a plain torchvision ``state_dict`` (``torch.save(model.state_dict(), "model.pt")``);
- the same with Ray Train / DDP ``module.`` prefixes or a ``torch.compile`` ``_orig_mod.``
  prefix (stripped);
- a dict holding the state dict under ``"model"`` or ``"state_dict"`` (training loops,
  detectron2 and maskrcnn-benchmark save this way);
- a directory: a Ray Train output folder; :func:`resolve_checkpoint` picks its newest
  ``model.pt`` (by ``step`` in the sibling ``meta.json``, else by path name).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fovea_ray.errors import FoveaRayError, InputError

__all__ = [
    "CHECKPOINT_NAME",
    "load_checkpoint",
    "load_checkpoint_with_meta",
    "resolve_checkpoint",
    "strip_prefixes",
    "weights_checksum",
]

#: The file name a training checkpoint directory holds (see the contracts).
CHECKPOINT_NAME = "model.pt"

# Prefixes added by wrappers around the model: DDP / Ray Train's prepare_model
# ("module."), torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Keys under which training loops nest the model's state dict.
_NESTED_KEYS = ("model", "state_dict", "model_state_dict", "module")
# Where fovea-ray itself stores metadata (e.g. a converted checkpoint's conventions).
META_KEY = "fovea_ray"


def weights_checksum(model_or_state_dict: torch.nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 hex digest of a model's weights, independent of device and of dict order.

    The digest covers, for every state-dict entry in sorted key order, the key, the dtype,
    the shape and the raw bytes of the tensor. Equal weights give equal digests on any
    device; any changed value, name, dtype or shape changes the digest.
    """
    if isinstance(model_or_state_dict, torch.nn.Module):
        state = model_or_state_dict.state_dict()
    elif isinstance(model_or_state_dict, Mapping):
        state = model_or_state_dict
    else:
        raise TypeError(
            f"weights_checksum needs an nn.Module or a state dict, got {type(model_or_state_dict).__name__}"
        )
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        tensor = value.detach().to("cpu").contiguous()
        digest.update(key.encode("utf-8"))
        digest.update(str(tensor.dtype).encode("ascii"))
        digest.update(repr(tuple(tensor.shape)).encode("ascii"))
        # Viewing as bytes works for every dtype (bfloat16 has no numpy equivalent).
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _step_of(checkpoint: Path) -> int | None:
    meta = checkpoint.parent / "meta.json"
    if not meta.is_file():
        return None
    try:
        step = json.loads(meta.read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None


def _natural_key(path: Path) -> list[Any]:
    # "checkpoint_10" sorts after "checkpoint_9".
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", path.as_posix())]


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file that ``path`` names.

    A file is returned as is. A directory (a training output folder) resolves to the
    newest ``model.pt`` anywhere beneath it: the one whose sibling ``meta.json`` has the
    largest ``step``; checkpoints without a readable step rank below those with one and
    among themselves by (natural) path name.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found")
    if not path.is_dir():
        raise InputError(f"{path}: not a checkpoint file or directory")
    candidates = sorted(path.rglob(CHECKPOINT_NAME))
    candidates = [c for c in candidates if c.is_file()]
    if not candidates:
        raise InputError(f"{path}: no {CHECKPOINT_NAME} found beneath this directory")

    def rank(candidate: Path) -> tuple[int, int, list[Any]]:
        step = _step_of(candidate)
        return (0 if step is None else 1, -1 if step is None else step, _natural_key(candidate.relative_to(path)))

    return max(candidates, key=rank)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers, nothing else (detectron2 ``.pkl``)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def _unsafe_message(path: Path, reason: str) -> str:
    return (
        f"{path}: refused to load: the checkpoint contains a pickled Python object, not only "
        f"tensors ({reason}); unpickling it could run arbitrary code. Re-save just the weights, "
        f"e.g. torch.save(model.state_dict(), 'model.pt'), or use safetensors"
    )


def _read_raw(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise FoveaRayError(
                f"{path}: reading .safetensors needs the 'safetensors' package (pip install safetensors)"
            ) from err
        return load_file(str(path), device="cpu")
    if suffix == ".pkl":
        import numpy as np

        try:
            with path.open("rb") as fh:
                raw = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
        except pickle.UnpicklingError as err:
            raise FoveaRayError(_unsafe_message(path, str(err))) from err
        except (EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
            raise InputError(f"{path}: not a readable pickle of numpy arrays ({err})") from err

        def to_tensor(obj: Any) -> Any:
            if isinstance(obj, np.ndarray):
                return torch.from_numpy(np.ascontiguousarray(obj))
            if isinstance(obj, dict):
                return {k: to_tensor(v) for k, v in obj.items()}
            return obj

        return to_tensor(raw)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's weights-only unpickler refused a global: say which and why.
        found = re.search(r"GLOBAL (\S+)", str(err))
        detail = f"it needs the global {found.group(1)}" if found else str(err).strip().splitlines()[0]
        raise FoveaRayError(_unsafe_message(path, detail)) from err
    except Exception as err:  # corrupt files fail in many ways inside the unpickler
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: not a readable torch checkpoint ({reason})") from err


def strip_prefixes(state_dict: Mapping[str, Any]) -> OrderedDict[str, Any]:
    """Remove wrapper prefixes (``module.``, ``_orig_mod.``) shared by every key."""
    state = OrderedDict(state_dict)
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = OrderedDict((k[len(prefix) :], v) for k, v in state.items())
                changed = True
    return state


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_checkpoint_with_meta(path: str | Path) -> tuple[OrderedDict[str, torch.Tensor], dict[str, Any], Path]:
    """Like :func:`load_checkpoint`, also returning fovea-ray metadata and the file read.

    The metadata is the checkpoint's ``"fovea_ray"`` entry (a converted checkpoint's
    conventions), merged over the sibling ``meta.json`` of a training checkpoint.
    """
    file = resolve_checkpoint(path)
    raw = _read_raw(file)
    meta: dict[str, Any] = {}
    sidecar = file.parent / "meta.json"
    if sidecar.is_file():
        try:
            loaded = json.loads(sidecar.read_text())
            if isinstance(loaded, dict):
                meta.update(loaded)
        except (OSError, ValueError):
            pass
    state: Any = raw
    if isinstance(raw, Mapping) and not _is_state_dict(raw):
        if isinstance(raw.get(META_KEY), Mapping):
            meta.update(raw[META_KEY])
        for key in _NESTED_KEYS:
            if isinstance(raw.get(key), Mapping):
                state = raw[key]
                break
    if not isinstance(state, Mapping) or not state:
        raise InputError(
            f"{file}: no state dict found (expected a dict of tensors, or one under 'model' / 'state_dict')"
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(
            f"{file}: state dict entries that are not tensors: "
            f"{', '.join(map(str, bad[:5]))}{' ...' if len(bad) > 5 else ''}"
        )
    return strip_prefixes(state), meta, file


def load_checkpoint(path: str | Path) -> OrderedDict[str, torch.Tensor]:
    """Load a model state dict safely (no arbitrary unpickling) from a file or directory.

    Returns the tensors with any DDP / Ray Train ``module.`` prefix stripped. Raises
    :class:`~fovea_ray.errors.FoveaRayError` when the file holds pickled objects other
    than tensors, and :class:`~fovea_ray.errors.InputError` for missing or unreadable files.
    """
    return load_checkpoint_with_meta(path)[0]
