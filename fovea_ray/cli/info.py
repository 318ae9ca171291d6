"""``fovea-ray info``: versions, devices and Ray reachability."""

from __future__ import annotations

import importlib.metadata as md
import os

import typer


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def info(
    address: str = typer.Option(
        None, "--address", help="Ray cluster address to probe (default: RAY_ADDRESS, else none)."
    ),
) -> None:
    """Print package versions, the devices seen (CPU/CUDA) and whether a Ray cluster is reachable."""
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
