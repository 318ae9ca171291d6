"""Before a run: learn the network's facts the store needs, without a model in the driver.

One Ray task builds the network exactly as the actors will, resolves the layer
patterns (the only place they are resolved: the actors get the names), runs one tiny
tapped forward to learn each layer's channel count, and returns the weights checksum
and the foveation parameters as a :class:`ModelFacts`. The driver itself never imports
torch, so its memory stays small and flat however large the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Layer aliases the probe resolves per network: the family's default layer, every block.
DEFAULT_ALIAS = ":default"
BLOCKS_ALIAS = ":blocks"


@dataclass(frozen=True)
class ModelFacts:
    """What the probe learnt about the run's network; the store's layout and config read it.

    Attributes
    ----------
    layers : tuple of str
        The tapped modules' names, resolved from the patterns, in network depth order.
    channels : tuple of int
        Channels C of each layer, in the order of ``layers``.
    stats : tuple of str
        The canonical names of the per-channel reductions S.
    control_stats : tuple of str
        The pixel-control statistics' names.
    weights_checksum : str
        sha256 of the network's weights.
    foveation : dict
        The foveator's parameters (:meth:`fovea_ray.foveation.Foveator.params`).
    versions : dict
        torch and torchvision versions of the process that built the network.
    default_layer : str
        The network family's documented layer at about half depth.
    input : dict or None
        A classifier's input resize and normalisation (:class:`fovea_ray.model.zoo.InputSpec`);
        None for Mask R-CNN, which sees the canvas at its own scale.
    """

    layers: tuple[str, ...]
    channels: tuple[int, ...]
    stats: tuple[str, ...]
    control_stats: tuple[str, ...]
    weights_checksum: str
    foveation: dict[str, Any]
    versions: dict[str, str]
    default_layer: str = ""
    input: dict[str, Any] | None = None

    def store_layers(self) -> dict[str, tuple[int, list[str]]]:
        """``{layer: (channels, stat names)}`` as :func:`fovea_ray.store.create_store` takes it."""
        return {name: (c, list(self.stats)) for name, c in zip(self.layers, self.channels)}


def probe_model(
    arch: str,
    weights: str | None,
    canvas: tuple[int, int],
    seed: int,
    layers: Sequence[str],
    stats: Sequence[str],
    backbone_only: bool,
    pixels_per_degree: float,
    model: str | None = None,
) -> ModelFacts:
    """Build the network on the CPU and report what the store's layout and config need.

    Parameters
    ----------
    arch, weights, canvas, seed
        The network, as :func:`fovea_ray.model.build_model` takes them.
    layers : sequence of str
        Layer names or glob patterns (:func:`fovea_ray.taps.resolve_layers`), and the
        aliases :data:`DEFAULT_ALIAS` (the family's default layer) and :data:`BLOCKS_ALIAS`
        (every block of the family, :func:`fovea_ray.model.zoo.block_patterns`). Empty:
        the default layer.
    stats : sequence of str
        Per-channel reductions (:func:`fovea_ray.taps.parse_stats`).
    backbone_only : bool
        Tap the backbone only (every layer must lie inside it).
    pixels_per_degree : float
        The manifest's display geometry, for the foveator's parameters.
    model : str, optional
        A model spec (:mod:`fovea_ray.model.spec`) of any network; it replaces ``arch``.

    Returns
    -------
    ModelFacts
        The resolved layers, their channels and the rest of the store's facts.
    """
    import torch
    import torchvision

    from fovea_ray.controls import control_stat_names
    from fovea_ray.foveation import Foveator
    from fovea_ray.model import build_model
    from fovea_ray.model.zoo import block_patterns
    from fovea_ray.taps import Tapper

    if model:
        net = build_model(model=model, weights=weights, canvas=tuple(canvas), seed=seed, device="cpu")
    else:
        net = build_model(arch, weights, tuple(canvas), seed=seed, device="cpu")
    default = str(net.fovea_ray_info["default_layer"])
    wanted: list[str] = []
    for layer in layers or [DEFAULT_ALIAS]:
        wanted.extend(
            [default] if layer == DEFAULT_ALIAS else block_patterns(net) if layer == BLOCKS_ALIAS else [layer]
        )
    tapper = Tapper(net, wanted, list(stats), backbone_only=backbone_only)
    h, w = (min(int(v), 128) for v in canvas)  # the model never rescales: a small input is cheap
    with torch.inference_mode():
        out = tapper(torch.full((1, 3, h, w), 0.5))
    resolved = tuple(out.layers)
    return ModelFacts(
        layers=resolved,
        channels=tuple(int(out.taps[name].shape[1]) for name in resolved),
        stats=tuple(str(s) for s in out.stats),
        control_stats=tuple(control_stat_names(list(out.stats))),
        weights_checksum=str(net.fovea_ray_info["checksum"]),
        foveation=Foveator(pixels_per_degree=float(pixels_per_degree)).params(),
        # str(): torch.__version__ is a TorchVersion, whose unpickling would import torch in the driver.
        versions={"torch": str(torch.__version__), "torchvision": str(torchvision.__version__)},
        default_layer=default,
        input=net.fovea_ray_info.get("input"),
    )
