"""``fovea-ray info``: versions, devices and Ray reachability."""

from __future__ import annotations

import importlib.metadata as md
import os

import typer

from fovea_ray.names import MAX_CANVAS


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def info(
    address: str = typer.Option(
        None, "--address", help="Ray cluster address to probe (default: RAY_ADDRESS, else none)."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="A network (MODEL or MODEL@WEIGHTS): maskrcnn_resnet101_fpn, resnet50, vit_b_16, timm:NAME, "
        "package.module:function. Prints what it is and its default layer.",
    ),
    layers: bool = typer.Option(False, "--layers", help="With --model: list its tappable layers in depth order."),
    canvas: int = typer.Option(
        224, "--canvas", min=32, max=MAX_CANVAS, help="With --model: the canvas side in pixels."
    ),
) -> None:
    """Print package versions, the devices seen (CPU/CUDA) and whether a Ray cluster is reachable.

    With --model, describe that network instead (and with --layers, every layer that can be tapped).
    """
    if model is not None:
        _describe(model, layers, canvas)
        return
    if layers:
        from fovea_ray.errors import InputError

        raise InputError("--layers lists a network's layers: give --model too (e.g. --model resnet50 --layers)")
    from fovea_ray import __version__

    typer.echo(f"fovea-ray    {__version__}")
    for dist in ("torch", "torchvision", "ray", "numpy", "scipy", "scikit-learn", "zarr", "pycocotools", "typer"):
        typer.echo(f"{dist:<12} {_version(dist)}")

    import torch

    typer.echo(f"cpu          {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            typer.echo(f"cuda:{i}       {p.name}, {p.total_memory / 2**30:.1f} GiB")
    else:
        typer.echo("cuda         not available (CPU only)")

    from fovea_ray.cluster import probe

    addr = address or os.environ.get("RAY_ADDRESS")
    typer.echo(f"ray cluster  {probe(addr)}")


def _describe(spec: str, layers: bool, canvas: int) -> None:
    """One network: kind, weights, input and default layer; with ``layers``, every tappable layer."""
    import torch

    from fovea_ray.model import build_model
    from fovea_ray.taps.layers import tappable_layers

    net = build_model(model=spec, canvas=canvas)
    info = net.fovea_ray_info
    default = info["default_layer"]
    typer.echo(f"model        {info['model']} ({info['kind']}), weights {info['weights']}")
    if "input" in info:
        spec_in = info["input"]
        typer.echo(
            f"input        canvas resized to {spec_in['size'][0]} x {spec_in['size'][1]}, "
            f"mean {spec_in['mean']}, std {spec_in['std']} ({spec_in['source']})"
        )
    typer.echo(f"default      {default}")
    if not layers:
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        images = torch.rand(2, 3, canvas, canvas)
    found = tappable_layers(net, images)
    typer.echo(f"{len(found)} tappable layers in depth order (output shape without the batch axis):")
    for name, shape in found:
        mark = "  <- default" if name == default else ""
        typer.echo(f"  {name:48s} {' x '.join(str(v) for v in shape)}{mark}")
