"""The model stage: a callable class that loads the network once and processes chunks.

Following Ray's batch-inference pattern, :class:`ChunkExtractor` builds the model, the
foveator and the taps in ``__init__`` (once per actor) and then turns each chunk row
(encoded bytes + fixations + windows) into per-channel reductions:

    decode (GPU where it can) -> foveate at each fixation -> crop the window, paste it
    centred on the canvas -> Mask R-CNN forward with hooks -> reduce on the device

Only ``K x C x S`` floats per layer, the pixel controls and the anchor scores leave the
device. The class is plain Python: it runs the same way in a test, in the benchmark's
model-only loop and inside a Ray actor.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fovea_ray.errors import one_line
from fovea_ray.pipeline.anchor import anchor_box_on_canvas, anchor_score
from fovea_ray.pipeline.probe import ModelFacts
from fovea_ray.pipeline.sink import ACT_PREFIX

#: Mixed-precision choices; "auto" = bf16 (fp16 where bf16 is unsupported) on CUDA, fp32 on CPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ModelSpec:
    """Everything an actor needs to rebuild exactly the run's network and taps.

    ``layers`` are the resolved module names (:attr:`ModelFacts.layers`), never patterns:
    the probe resolves them once, so every actor taps the same modules.
    """

    arch: str
    weights: str | None
    canvas: tuple[int, int]
    seed: int
    layers: tuple[str, ...]
    channels: tuple[int, ...]
    stats: tuple[str, ...]
    backbone_only: bool
    foveation: dict = field(default_factory=dict)
    device: str | None = None
    precision: str = "auto"
    batch_size: int = 8
    torch_threads: int | None = None
    weights_checksum: str | None = None
    model: str | None = None  # a model spec of any network; replaces arch (the Mask R-CNN backbone)

    @classmethod
    def from_facts(cls, facts: ModelFacts, **network: Any) -> ModelSpec:
        """The spec of a probed network: ``network`` gives arch, weights, canvas, seed, device, ...."""
        return cls(
            layers=facts.layers,
            channels=facts.channels,
            stats=facts.stats,
            foveation=dict(facts.foveation),
            weights_checksum=facts.weights_checksum,
            **network,
        )

    def to_dict(self) -> dict:
        """JSON-able form."""
        d = asdict(self)
        d["canvas"], d["layers"], d["stats"] = list(self.canvas), list(self.layers), list(self.stats)
        d["channels"] = list(self.channels)
        return d


def resolve_device(device: str | None) -> str:
    """``None`` -> ``"cuda"`` when this process sees a GPU, else ``"cpu"``."""
    import torch

    if device:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """The concrete precision: fp32 on CPU; bf16 (or fp16) autocast on CUDA for "auto"."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if not str(device).startswith("cuda"):
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


@dataclass
class ChunkResult:
    """One chunk's outputs (K = number of samples in the chunk)."""

    activations: dict[str, np.ndarray]  # layer -> (K, C, S) float32, NaN rows for failures
    controls: np.ndarray  # (K, 3, S') float32
    anchor_score: np.ndarray  # (K,) float32
    errors: list[str]  # K strings, "" = good


class ChunkExtractor:
    """Decode, foveate, render, forward with taps and reduce, one chunk at a time.

    Parameters
    ----------
    spec : ModelSpec
        the network, taps and device (:class:`ModelSpec`).

    Raises
    ------
    FoveaRayError
        the rebuilt network's weights differ from ``spec.weights_checksum``
        (the store was made with other weights: mixing them would corrupt it).
    """

    def __init__(self, spec: ModelSpec) -> None:
        import torch

        from fovea_ray.controls import control_stat_names
        from fovea_ray.errors import FoveaRayError
        from fovea_ray.foveation import Foveator
        from fovea_ray.model import build_model
        from fovea_ray.taps import Tapper

        if any(set("*?[,") & set(name) for name in spec.layers):
            raise ValueError(
                f"ModelSpec.layers must be resolved module names (the probe resolves patterns): {spec.layers}"
            )
        self.spec = spec
        if spec.torch_threads:
            # Ray sets OMP_NUM_THREADS to the actor's CPU reservation (often 1); the model
            # stage is the bottleneck, so give torch the cores the driver assigned it.
            torch.set_num_threads(int(spec.torch_threads))
        self.device = resolve_device(spec.device)
        self.precision = resolve_precision(spec.precision, self.device)
        if self.precision == "bf16" and self.device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            raise FoveaRayError(
                f"the GPU on {platform.node()} ({torch.cuda.get_device_name()}) has no bf16; "
                "rerun with --precision fp16 (in a new store: precision is part of its config)"
            )
        if self.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True  # fixed canvas: autotune once
        if spec.model:
            self.model = build_model(
                model=spec.model, weights=spec.weights, canvas=tuple(spec.canvas), seed=spec.seed, device=self.device
            )
        else:
            self.model = build_model(spec.arch, spec.weights, tuple(spec.canvas), seed=spec.seed, device=self.device)
        self.weights_checksum = str(self.model.fovea_ray_info["checksum"])
        if spec.weights_checksum and spec.weights_checksum != self.weights_checksum:
            raise FoveaRayError(
                f"the network rebuilt on {platform.node()} has weights checksum {self.weights_checksum[:12]}..., "
                f"the run expects {spec.weights_checksum[:12]}... (different torch/torchvision build or weights file?)"
            )
        self.foveator = Foveator(**spec.foveation)
        self.tapper = Tapper(self.model, list(spec.layers), list(spec.stats), backbone_only=spec.backbone_only)
        self.layers = list(spec.layers)
        self.control_stats = list(control_stat_names(list(spec.stats)))
        self.channels = dict(zip(self.layers, (int(c) for c in spec.channels)))
        #: Seconds spent in the tapped forward (incl. the device-to-host copy of the taps):
        #: the rest of the actor's time is decode, foveate/render, controls, anchor scores.
        self.forward_seconds = 0.0

    # ------------------------------------------------------------------ one chunk
    def _autocast(self):
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)

    def forward(self, canvas_batch) -> tuple[dict[str, np.ndarray], list[dict] | None, np.ndarray]:
        """Tapped forward of rendered canvases ``(B, 3, H, W)``: (taps, detections, controls).

        This is the model-only step the benchmark times on its own.
        """
        import torch

        from fovea_ray.controls import pixel_controls

        t0 = time.perf_counter()
        with torch.inference_mode():
            with self._autocast():
                out = self.tapper(canvas_batch)
            taps = {k: v.float().cpu().numpy() for k, v in out.taps.items()}
            self.forward_seconds += time.perf_counter() - t0
            controls = pixel_controls(canvas_batch.float(), list(self.spec.stats))
        return taps, out.detections, controls.float().cpu().numpy()

    def _decode(self, blob: bytes):
        from fovea_ray.data.render import decode_image

        return decode_image(blob, device=self.device)

    def _render(self, images: list, fixations: np.ndarray, windows: np.ndarray):
        from fovea_ray.data.render import render_batch

        return render_batch(images, fixations, windows, tuple(self.spec.canvas), self.foveator, device=self.device)

    def process(
        self,
        blobs: Sequence[bytes],
        read_errors: Sequence[str],
        fixations: np.ndarray,
        windows: np.ndarray,
        bboxes: np.ndarray,
        category_ids: Sequence[int],
    ) -> ChunkResult:
        """All samples of one chunk; a sample that cannot be decoded or rendered is recorded."""
        k = len(blobs)
        fixations = np.asarray(fixations, dtype=np.float64).reshape(k, 2)
        windows = np.asarray(windows, dtype=np.int64).reshape(k, 4)
        bboxes = np.asarray(bboxes, dtype=np.float64).reshape(k, 4)
        errors = [str(e) for e in read_errors]
        acts: dict[str, np.ndarray] = {}
        controls = np.full((k, 3, len(self.control_stats)), np.nan, np.float32)
        scores = np.full(k, np.nan, np.float32)
        todo = [i for i in range(k) if not errors[i]]
        bs = max(1, int(self.spec.batch_size))
        for lo in range(0, len(todo), bs):
            idx, images = [], []
            for i in todo[lo : lo + bs]:
                try:
                    images.append(self._decode(blobs[i]))
                    idx.append(i)
                except Exception as exc:  # noqa: BLE001 - a bad image is recorded, not fatal
                    errors[i] = one_line(exc, 500)
            if not idx:
                continue
            try:
                batch = self._render(images, fixations[idx], windows[idx])
            except Exception:  # noqa: BLE001 - isolate the sample that broke the batch
                keep, rendered = [], []
                for i, img in zip(idx, images):
                    try:
                        rendered.append(self._render([img], fixations[[i]], windows[[i]]))
                        keep.append(i)
                    except Exception as exc:  # noqa: BLE001
                        errors[i] = f"could not render: {one_line(exc, 500)}"
                if not keep:
                    continue
                import torch

                idx, batch = keep, torch.cat(rendered)
            del images
            taps, detections, ctrl = self.forward(batch)
            for layer, v in taps.items():
                if layer not in acts:
                    acts[layer] = np.full((k, *v.shape[1:]), np.nan, np.float32)
                acts[layer][idx] = v
            controls[idx] = ctrl
            if detections is not None:
                for j, i in enumerate(idx):
                    box = anchor_box_on_canvas(bboxes[i], windows[i], self.spec.canvas)
                    scores[i] = anchor_score(detections[j], box, int(category_ids[i]))
        for layer in self.layers:
            if layer not in acts:  # every sample of the chunk failed
                acts[layer] = np.full((k, self.channels[layer], len(self.spec.stats)), np.nan, np.float32)
        return ChunkResult(acts, controls, scores, errors)

    # ------------------------------------------------------------------ Ray Data
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``map_batches`` entry: each row is one chunk (from :func:`read_chunk`)."""
        rows: dict[str, list[Any]] = {
            "chunk": [],
            "n": [],
            "controls": [],
            "anchor_score": [],
            "errors": [],
            "weights_checksum": [],
            "seconds": [],
            "forward_seconds": [],
        }
        rows.update({ACT_PREFIX + layer: [] for layer in self.layers})
        for r in range(len(batch["chunk"])):
            t0, f0 = time.perf_counter(), self.forward_seconds
            res = self.process(
                list(batch["blobs"][r]),
                list(batch["read_error"][r]),
                np.stack(batch["fixation"][r]),
                np.stack(batch["window"][r]),
                np.stack(batch["bbox"][r]),
                list(batch["category_id"][r]),
            )
            n = len(res.errors)
            pad = int(batch["pad_to"][r])
            rows["chunk"].append(int(batch["chunk"][r]))
            rows["n"].append(n)
            for layer in self.layers:
                rows[ACT_PREFIX + layer].append(_pad(res.activations[layer], pad))
            rows["controls"].append(_pad(res.controls, pad))
            rows["anchor_score"].append(_pad(res.anchor_score, pad))
            rows["errors"].append(json.dumps(res.errors))
            rows["weights_checksum"].append(self.weights_checksum)
            rows["seconds"].append(time.perf_counter() - t0)
            rows["forward_seconds"].append(self.forward_seconds - f0)
        return {k: np.stack(v) if isinstance(v[0], np.ndarray) else np.asarray(v) for k, v in rows.items()}


def _pad(arr: np.ndarray, k: int) -> np.ndarray:
    """Pad the sample axis to ``k`` with NaN so every output row has one fixed shape."""
    if arr.shape[0] >= k:
        return arr
    out = np.full((k, *arr.shape[1:]), np.nan, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out
