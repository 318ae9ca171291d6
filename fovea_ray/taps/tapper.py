"""Forward hooks that reduce chosen layers' feature maps to per-channel statistics.

One forward pass taps any number of layers. Each hook reduces its (B, C, H, W) map on
the model's device to (B, C, S) as soon as the map exists, so full maps are never kept or
copied to the host: only B x C x S floats per layer leave the device, in one transfer.

Padding: torchvision's detection transform zero-pads a batch of differently sized images
to a common size (a multiple of 32). Statistics of image i at a layer cover only the
positions whose centres fall inside image i (:func:`~fovea_ray.taps.reductions.valid_extent`),
never the padding. Positions near the border still see padded pixels through their
receptive field, exactly as they see zero padding when the image runs alone.

Backbone-only mode runs the detection transform and the backbone, and stops the forward
pass (a private exception raised from a hook) as soon as every tapped layer has produced
its output and could not run again, so layers after the deepest tap are never computed.

Any other network (a classifier, a ViT, a user's module; see
:func:`fovea_ray.model.build_model`) is tapped the same way. Its input is the canvas
resized and normalised as ``model.fovea_ray_info["input"]`` says (no padding, so every
position is valid), and backbone-only mode stops it after the deepest tap. Maps of every
kind reduce per channel:

- (B, C, H, W) conv maps over the H x W positions;
- (B, N, C) token maps of transformers over the *patch* tokens: the leading class (and
  register) tokens, ``prefix_tokens`` of them, are left out, since the class token is a
  pooled summary rather than a place in the image (it stays tappable as the input of the
  head);
- (B, C) vectors (a pooled feature, the logits): every statistic of one value is the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from fovea_ray.taps.layers import resolve_layers
from fovea_ray.taps.reductions import DEFAULT_STATS, parse_stats, reduce_rows, valid_extent

__all__ = ["TapOutput", "Tapper", "capture"]

_DETECTION_KEYS = ("boxes", "labels", "scores", "masks")


class _StopForward(Exception):
    """Raised from a hook to end a backbone-only forward pass early."""


@dataclass
class TapOutput:
    """What one :class:`Tapper` call returns.

    Attributes
    ----------
    taps : dict of str to Tensor
        layer name -> (B, C, S) float32 statistics, in the order of ``stats``.
    detections : list of dict or None
        per image ``{"boxes", "labels", "scores"[, "masks"]}`` in input pixel
        coordinates (full-model mode), else None.
    layers : list of str
        the tapped module names, in network depth order.
    stats : list of str
        the statistic names (canonical), the S axis of every tap.
    image_sizes : list of tuple of int
        (height, width) of each input image (as the network saw it).
    confidence : Tensor or None
        a classifier's top-1 softmax probability per image (full forward of a
        network whose output is (B, K) logits), else None.
    """

    taps: dict[str, torch.Tensor]
    detections: list[dict[str, torch.Tensor]] | None
    layers: list[str]
    stats: list[str]
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    confidence: torch.Tensor | None = None


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _as_image_list(images: Any, device: torch.device) -> list[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be float RGB in [0, 1], got dtype {images.dtype}")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch")
        return list(images.to(device))
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is an empty list")
        out = []
        for i, image in enumerate(images):
            if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
                shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
                raise ValueError(f"images[{i}] must be a (3, H, W) tensor, got {shape}")
            if not image.is_floating_point():
                raise ValueError(f"images[{i}] must be float RGB in [0, 1], got dtype {image.dtype}")
            out.append(image.to(device))
        return out
    raise ValueError(
        f"images must be a (B, 3, H, W) tensor or a list of (3, H, W) tensors, got {type(images).__name__}"
    )


class Tapper:
    """Hooks on ``layers`` of ``model``, registered once and reused for every batch.

    Parameters
    ----------
    model : nn.Module
        a network in eval mode: a torchvision detection model with a ``transform``
        and a ``backbone`` (e.g. ``build_model()``), or any other ``nn.Module`` (e.g.
        ``build_model(model="vit_b_16")``), fed the canvas as ``input_spec`` says.
    layers : str or iterable of str
        module names or patterns (:func:`~fovea_ray.taps.layers.resolve_layers`).
    stats : str or iterable of str, optional
        statistic names (:mod:`fovea_ray.taps.reductions`); S follows this order.
    backbone_only : bool, optional
        run only the transform and the backbone, stopping after the deepest
        tap; every layer must then lie inside ``model.backbone``.
    masks : bool, optional
        in full-model mode, also run the mask branch and return masks. Off by
        default: boxes and scores do not depend on it, and pasting masks is costly.
    output_device : str, torch.device or None, optional
        where the returned statistics and detections go (``"cpu"``);
        None keeps them on the model's device.
    median_backend : str, optional
        ``"auto"``, ``"numpy"`` (CPU only) or ``"torch"``.
    input_spec : InputSpec, dict or None, optional
        for a non-detection network, the resize and normalisation of its input (an
        :class:`~fovea_ray.model.zoo.InputSpec` or its dict); default
        ``model.fovea_ray_info["input"]``, else the images are fed as they are.
    prefix_tokens : int or None, optional
        leading tokens of (B, N, C) maps left out of the statistics (of maps
        with N = prefix + patch tokens); default ``model.fovea_ray_info["prefix_tokens"]``,
        else detected (timm's ``num_prefix_tokens``, 1 for a torchvision ViT, else 0).

    Notes
    -----
    The hooks act only during a call; running the model directly is unaffected. A module
    that runs more than once per forward pass (such as the ReLU shared by the three
    stages of a torchvision Bottleneck) is refused, so statistics of different calls are
    never mixed. Use :meth:`close` (or ``with Tapper(...) as tapper:``) to remove the hooks.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | Iterable[str],
        stats: str | Iterable[str] = DEFAULT_STATS,
        backbone_only: bool = False,
        *,
        masks: bool = False,
        output_device: str | torch.device | None = "cpu",
        median_backend: str = "auto",
        input_spec: Any = None,
        prefix_tokens: int | None = None,
    ) -> None:
        from fovea_ray.model.zoo import InputSpec
        from fovea_ray.model.zoo import patch_tokens as detect_patches
        from fovea_ray.model.zoo import prefix_tokens as detect_prefix

        info = getattr(model, "fovea_ray_info", None) or {}
        self.detection = hasattr(model, "transform") and hasattr(model, "backbone")
        input_spec = info.get("input") if input_spec is None else input_spec
        if isinstance(input_spec, dict):
            input_spec = InputSpec.from_dict(input_spec)
        self.input: InputSpec | None = None if self.detection else input_spec
        if prefix_tokens is None:
            prefix_tokens = info.get("prefix_tokens", detect_prefix(model))
        self.prefix_tokens = int(prefix_tokens)
        patches = info["patch_tokens"] if "patch_tokens" in info else detect_patches(model)
        self.patch_tokens: int | None = None if patches is None else int(patches)
        if median_backend not in ("auto", "numpy", "torch"):
            raise ValueError(f"median_backend must be 'auto', 'numpy' or 'torch', got {median_backend!r}")
        self.model = model
        self.layers: list[str] = resolve_layers(model, layers)
        self._specs = parse_stats(stats)
        self.stats: list[str] = [s.name for s in self._specs]
        self.backbone_only = bool(backbone_only)
        self.output_device = None if output_device is None else torch.device(output_device)
        self.median_backend = median_backend
        modules = dict(model.named_modules())
        if self.backbone_only and self.detection:
            outside = [n for n in self.layers if not n.startswith("backbone.")]
            if outside:
                raise ValueError(f"backbone_only=True cannot tap layers outside model.backbone: {', '.join(outside)}")
        mask_layers = [
            n
            for n in self.layers
            if n.startswith(("roi_heads.mask_head", "roi_heads.mask_predictor", "roi_heads.mask_roi_pool"))
        ]
        self.masks = bool(masks or mask_layers)
        # When may a backbone-only pass stop? After a tapped module ran, unless its caller
        # could run it again: then after the caller (the nearest ancestor with a forward).
        self._triggers = {n: self._stop_trigger(n, modules) for n in self.layers}
        self._active = False
        self._results: dict[str, torch.Tensor] = {}
        self._pending: set[str] = set()
        self._batch = 0
        self._image_sizes: list[tuple[int, int]] = []
        self._padded: tuple[int, int] = (0, 0)
        self._handles = [modules[n].register_forward_hook(partial(self._on_tap, n)) for n in self.layers]
        if self.detection:
            self._handles.append(model.transform.register_forward_hook(self._on_transform))
        for trigger in sorted(set(self._triggers.values()) - set(self.layers)):
            self._handles.append(modules[trigger].register_forward_hook(partial(self._on_trigger, trigger)))

    @staticmethod
    def _stop_trigger(name: str, modules: dict[str, nn.Module]) -> str:
        parts = name.split(".")
        parent_name = ".".join(parts[:-1])
        parent = modules.get(parent_name)
        child = modules[name]
        # Containers that call each child once, in order (Sequential, IntermediateLayerGetter).
        if isinstance(parent, (nn.Sequential, nn.ModuleDict)) and sum(c is child for c in parent.children()) == 1:
            return name
        # A ModuleList has no forward; its owner decides how often the child runs.
        while isinstance(parent, nn.ModuleList) and parent_name:
            parent_name = ".".join(parent_name.split(".")[:-1])
            parent = modules.get(parent_name)
        return parent_name if parent_name else name

    # -- hooks ---------------------------------------------------------------------------

    def _on_transform(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not self._active:
            return
        image_list = output[0]
        self._image_sizes = [tuple(int(v) for v in s) for s in image_list.image_sizes]
        self._padded = (int(image_list.tensors.shape[-2]), int(image_list.tensors.shape[-1]))

    def _on_tap(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if not self._active:
            return
        if name in self._results:
            raise ValueError(
                f"layer {name!r} ran more than once in one forward pass (a module shared between "
                "calls, such as the ReLU of a torchvision Bottleneck); tap a module that runs once, "
                "e.g. the block itself or its bn3"
            )
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"layer {name!r} outputs a {type(output).__name__}, not a (B, C, H, W) tensor")
        kinds = (4,) if self.detection else (2, 3, 4)
        if output.ndim not in kinds or output.shape[0] != self._batch:
            wanted = "(B, C, H, W)" if self.detection else "(B, C, H, W), (B, N, C) or (B, C)"
            raise ValueError(
                f"layer {name!r} outputs shape {tuple(output.shape)}, not {wanted} with B={self._batch}, one per image"
            )
        if output.ndim == 4:
            self._results[name] = self._reduce(output)
        else:
            self._results[name] = self._reduce_tokens(name, output)
        self._arrive(name)

    def _on_trigger(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if self._active:
            self._arrive(name)

    def _arrive(self, name: str) -> None:
        self._pending.discard(name)
        if self.backbone_only and not self._pending and len(self._results) == len(self.layers):
            raise _StopForward

    def _reduce_tokens(self, name: str, feature: torch.Tensor) -> torch.Tensor:
        if feature.ndim == 2:  # (B, C): one value per channel
            rows = feature.reshape(-1, 1)
            return reduce_rows(rows, self._specs, median_backend=self.median_backend).view(*feature.shape, -1)
        batch, tokens, channels = feature.shape
        # The prefix is there only when the map holds prefix + patches tokens (the patch
        # embedding's output comes before the class token is added).
        full = self.prefix_tokens + self.patch_tokens if self.patch_tokens is not None else None
        skip = self.prefix_tokens if (tokens == full or (full is None and tokens > self.prefix_tokens)) else 0
        patches = feature[:, skip:, :]
        # Channels to rows: (B, N', C) -> (B, C, N'); the copy is one map, on the device.
        rows = patches.transpose(1, 2).reshape(batch * channels, tokens - skip)
        return reduce_rows(rows, self._specs, median_backend=self.median_backend).view(batch, channels, -1)

    def _reduce(self, feature: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = feature.shape
        if not self.detection:  # resized to one size, never padded: every position is valid
            rows = feature.reshape(batch * channels, height * width)
            return reduce_rows(rows, self._specs, median_backend=self.median_backend, width=width).view(
                batch, channels, -1
            )
        padded_h, padded_w = self._padded
        if all(size == (padded_h, padded_w) for size in self._image_sizes):
            rows = feature.reshape(batch * channels, height * width)
            return reduce_rows(rows, self._specs, median_backend=self.median_backend, width=width).view(
                batch, channels, -1
            )
        per_image = []
        for i, (image_h, image_w) in enumerate(self._image_sizes):
            valid_h = valid_extent(image_h, height, padded_h)
            valid_w = valid_extent(image_w, width, padded_w)
            rows = feature[i, :, :valid_h, :valid_w].reshape(channels, valid_h * valid_w)
            per_image.append(reduce_rows(rows, self._specs, median_backend=self.median_backend, width=valid_w))
        return torch.stack(per_image)

    # -- calls ---------------------------------------------------------------------------

    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor]) -> TapOutput:
        """Run the model on ``images`` (B, 3, H, W) or a list of (3, H, W), RGB in [0, 1]."""
        if self._handles is None:
            raise RuntimeError("this Tapper is closed")
        model = self.model
        if model.training:
            raise ValueError("the model is in training mode; call model.eval() before tapping")
        image_list = _as_image_list(images, _model_device(model))
        self._batch = len(image_list)
        self._results = {}
        self._pending = set(self._triggers.values())
        self._image_sizes = []
        detections = confidence = None
        self._active = True
        try:
            with torch.inference_mode():
                if not self.detection:
                    confidence = self._classifier_forward(image_list)
                elif self.backbone_only:
                    transformed, _ = model.transform(image_list)
                    try:
                        model.backbone(transformed.tensors)
                    except _StopForward:
                        pass
                else:
                    detections = self._full_forward(image_list)
        finally:
            self._active = False
        missing = [n for n in self.layers if n not in self._results]
        if missing:
            hint = " (the mask branch runs only with masks=True)" if any("mask" in n for n in missing) else ""
            raise ValueError(f"layers did not run in the forward pass: {', '.join(missing)}{hint}")
        taps = self._gather()
        if detections is not None and self.output_device is not None:
            detections = [
                {k: v.to(self.output_device) for k, v in d.items() if k in _DETECTION_KEYS} for d in detections
            ]
        sizes = list(self._image_sizes) or [tuple(int(v) for v in im.shape[-2:]) for im in image_list]
        self._results = {}
        if confidence is not None and self.output_device is not None:
            confidence = confidence.to(self.output_device)
        return TapOutput(
            taps=taps,
            detections=detections,
            layers=list(self.layers),
            stats=list(self.stats),
            image_sizes=sizes,
            confidence=confidence,
        )

    def _classifier_forward(self, image_list: list[torch.Tensor]) -> torch.Tensor | None:
        """Resize + normalise, forward (stopped after the deepest tap in backbone-only mode),
        and the top-1 softmax confidence when the output is (B, K) logits."""
        sizes = {tuple(im.shape[-2:]) for im in image_list}
        if self.input is None and len(sizes) > 1:
            raise ValueError(f"images of different sizes {sorted(sizes)} need an input spec that resizes them")
        batch = torch.stack(image_list) if len(sizes) == 1 else None
        if self.input is not None:
            batch = torch.cat([self.input(im[None]) for im in image_list]) if batch is None else self.input(batch)
        self._image_sizes = [tuple(int(v) for v in batch.shape[-2:])] * len(image_list)
        try:
            output = self.model(batch)
        except _StopForward:
            return None
        if isinstance(output, torch.Tensor) and output.ndim == 2 and output.shape[0] == len(image_list):
            return output.float().softmax(dim=1).max(dim=1).values
        return None

    def _full_forward(self, image_list: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        roi_heads = getattr(self.model, "roi_heads", None)
        skip_masks = not self.masks and roi_heads is not None and getattr(roi_heads, "mask_roi_pool", None) is not None
        saved = roi_heads.mask_roi_pool if skip_masks else None
        if skip_masks:
            # torchvision's RoIHeads.has_mask() is False without a mask pooler.
            roi_heads.mask_roi_pool = None
        try:
            return self.model(image_list)
        finally:
            if skip_masks:
                roi_heads.mask_roi_pool = saved

    def _gather(self) -> dict[str, torch.Tensor]:
        results = [self._results[n] for n in self.layers]
        if self.output_device is None:
            return dict(zip(self.layers, results))
        # One device-to-host transfer for all layers.
        flat = torch.cat([r.reshape(self._batch, -1) for r in results], dim=1).to(self.output_device)
        pieces = flat.split([r[0].numel() for r in results], dim=1)
        return {n: p.reshape(r.shape) for n, p, r in zip(self.layers, pieces, results)}

    def close(self) -> None:
        """Remove the hooks (the model is left exactly as before)."""
        for handle in self._handles or ():
            handle.remove()
        self._handles = None

    def __enter__(self) -> Tapper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Tapper({len(self.layers)} layers, stats={self.stats}, backbone_only={self.backbone_only})"


def capture(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    layers: str | Iterable[str],
    stats: str | Iterable[str] = DEFAULT_STATS,
    backbone_only: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-channel statistics of ``layers`` for ``images``: {layer: (B, C, S) tensor}.

    A one-shot :class:`Tapper` (hooks registered, one forward pass, hooks removed). The
    statistics are computed on the model's device and returned on the CPU, S in the order
    of ``stats``. See :class:`Tapper` for padding, shared modules and backbone-only mode.
    """
    with Tapper(model, layers, stats, backbone_only=backbone_only) as tapper:
        return tapper(images).taps
