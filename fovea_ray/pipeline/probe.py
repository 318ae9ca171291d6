"""Before a run: learn the network's facts the store needs, without a model in the driver.

One Ray task builds the network exactly as the actors will, resolves the layer
patterns, runs one tiny tapped forward to learn each layer's channel count, and returns
the weights checksum and the foveation parameters. The driver itself never imports
torch, so its memory stays small and flat however large the run.
"""

from __future__ import annotations

from collections.abc import Sequence


def probe_model(
    arch: str,
    weights: str | None,
    canvas: tuple[int, int],
    seed: int,
    layers: Sequence[str],
    stats: Sequence[str],
    backbone_only: bool,
    pixels_per_degree: float,
) -> dict:
    """Build the network on the CPU and report what the store's layout and config need.

    Returns a dict with ``layers`` (resolved names, depth order), ``channels`` (per
    layer), ``stats``, ``control_stats``, ``weights_checksum``, ``foveation`` (params)
    and ``versions`` (torch, torchvision).
    """
    import torch
    import torchvision

    from fovea_ray.controls import control_stat_names
    from fovea_ray.foveation import Foveator
    from fovea_ray.model import build_model
    from fovea_ray.taps import Tapper

    model = build_model(arch, weights, tuple(canvas), seed=seed, device="cpu")
    tapper = Tapper(model, list(layers), list(stats), backbone_only=backbone_only)
    h, w = (min(int(v), 128) for v in canvas)  # the model never rescales: a small input is cheap
    with torch.inference_mode():
        out = tapper(torch.full((1, 3, h, w), 0.5))
    resolved = list(out.layers)
    return {
        "layers": resolved,
        "channels": [int(out.taps[name].shape[1]) for name in resolved],
        "stats": [str(s) for s in out.stats],
        "control_stats": list(control_stat_names(list(out.stats))),
        "weights_checksum": str(model.fovea_ray_info["checksum"]),
        "foveation": Foveator(pixels_per_degree=float(pixels_per_degree)).params(),
        # str(): torch.__version__ is a TorchVersion, whose unpickling would import torch in the driver.
        "versions": {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__)},
    }
