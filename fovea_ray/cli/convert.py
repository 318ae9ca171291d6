"""``fovea-ray convert``: a maskrcnn-benchmark or detectron2 checkpoint to a torchvision one."""

from __future__ import annotations

from pathlib import Path

import typer

from fovea_ray.errors import InputError

#: Kept here as well as in fovea_ray.model.convert, so that --help needs no torch; a test checks they agree.
SOURCES = ("maskrcnn-benchmark", "detectron2")
INPUT_FORMATS = ("BGR255", "RGB255", "RGB1")


def _triple(option: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise InputError(f"{option}: expected three comma-separated numbers such as 102.98,115.95,122.77, got {text!r}")
    return values


def _choice(option: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        raise InputError(f"{option}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def convert(
    src: Path = typer.Argument(..., help="maskrcnn-benchmark .pth or detectron2 .pkl/.pth checkpoint."),
    dst: Path = typer.Argument(..., help="Output torchvision checkpoint (.pt), loadable with --weights DST."),
    source: str | None = typer.Option(
        None, "--source", help="Framework: maskrcnn-benchmark or detectron2 (default: detected from the key names)."
    ),
    stride_in_1x1: bool = typer.Option(
        True,
        "--stride-in-1x1/--no-stride-in-1x1",
        help="The source ResNet strides its 1x1 convs (MSRA models, the default); --no-stride-in-1x1 for "
        "models initialised from torchvision ResNets.",
    ),
    input_format: str | None = typer.Option(
        None, "--input-format", help="Source input: BGR255 (both frameworks' default), RGB255 or RGB1."
    ),
    pixel_mean: str | None = typer.Option(
        None, "--pixel-mean", help="In the source's channel order and scale, e.g. 102.98,115.95,122.77."
    ),
    pixel_std: str | None = typer.Option(None, "--pixel-std", help="In the source's channel order and scale."),
) -> None:
    """Convert a ResNet-FPN Mask R-CNN checkpoint (maskrcnn-benchmark or detectron2) to torchvision.

    Every name is mapped and the conventions that change the network's function (stride in the
    1x1 convolution, BGR/255 input, frozen batch norm epsilon, class layout) are reproduced exactly
    and recorded in the checkpoint, so `fovea-ray extract --weights DST` rebuilds the same network.
    """
    from fovea_ray.model.convert import convert_checkpoint

    out = convert_checkpoint(
        src,
        dst,
        _choice("--source", source, SOURCES),
        stride_in_1x1=stride_in_1x1,
        input_format=_choice("--input-format", input_format, INPUT_FORMATS),
        pixel_mean=_triple("--pixel-mean", pixel_mean),
        pixel_std=_triple("--pixel-std", pixel_std),
    )
    typer.echo(f"wrote {out}")
