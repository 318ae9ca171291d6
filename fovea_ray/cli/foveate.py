"""``fovea-ray foveate``: foveate one image at a fixation and write it as PNG."""

from __future__ import annotations

from pathlib import Path

import typer

from fovea_ray.errors import InputError


def parse_fixation(text: str) -> tuple[float, float]:
    """``"X,Y"`` (pixels, floats allowed) -> (x, y); InputError otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise InputError(f"--fixation: expected X,Y in pixels (for example 320,240), got {text!r}") from None
    if not all(v == v and abs(v) != float("inf") for v in (x, y)):
        raise InputError(f"--fixation: expected finite X,Y in pixels, got {text!r}")
    return x, y


def read_rgb(path: Path):
    """The image at ``path`` as an (H, W, 3) uint8 array; InputError naming the file otherwise."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the image ({exc})") from None


def _write_panel(
    path: Path, original, foveated, cutoff, fixation: tuple[float, float], nyquist_cpd: float, ppd: float
) -> None:
    """original | foveated | cutoff map (cycles/degree, Nyquist contour), fixation marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = original.shape[:2]
    fig_w = 3 * 4.0 + 1.2
    fig, axes = plt.subplots(1, 3, figsize=(fig_w, 4.0 * h / w + 0.8), constrained_layout=True)
    fx, fy = fixation
    for ax, img, title in ((axes[0], original, "original"), (axes[1], foveated, "foveated")):
        ax.imshow(img)
        ax.set_title(title)
    im = axes[2].imshow(cutoff, cmap="viridis", vmin=0.0, vmax=max(float(cutoff.max()), nyquist_cpd))
    axes[2].contour(cutoff, levels=[nyquist_cpd], colors="white", linewidths=0.8)
    axes[2].set_title(f"cutoff (Nyquist {nyquist_cpd:g} c/deg, white)")
    fig.colorbar(im, ax=axes[2], label="cutoff frequency (cycles/degree)", shrink=0.85)
    for ax in axes:
        ax.plot([fx], [fy], marker="+", color="red", markersize=14, markeredgewidth=2, linestyle="none")
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"fixation ({fx:g}, {fy:g}) px, {ppd:g} px/deg")
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the panel ({exc})") from None
    finally:
        plt.close(fig)


def foveate(
    image: Path = typer.Argument(..., help="Image file to foveate (PNG, JPEG, ...; converted to RGB)."),
    fixation: str = typer.Option(..., "--fixation", help="Fixation point X,Y in pixels; may lie outside the image."),
    out: Path = typer.Option(..., "--out", help="Output PNG of the foveated image."),
    ppd: float = typer.Option(30.0, "--ppd", help="Display resolution in pixels per degree of visual angle."),
    panel: bool = typer.Option(
        False, "--panel", help="Also write OUT's stem + '_panel.png': original | foveated | cutoff map."
    ),
    device: str = typer.Option("cpu", "--device", help="Torch device to run the filter on (cpu, cuda, cuda:1, ...)."),
) -> None:
    """Foveate one image at a fixation and write it as PNG.

    The Geisler & Perry (1998) filter: sharp at the fixation, the cutoff frequency
    falling with eccentricity as e2·ln(1/ct0)/(alpha·(e + e2)) cycles/degree (e2 = 2.3°,
    ct0 = 1/64, alpha = 0.106). With --panel, a figure of the original, the foveated
    image and the per-pixel cutoff map (fixation marked) is written next to OUT.
    """
    # Validate the cheap things before importing torch, so mistakes fail fast.
    fx, fy = parse_fixation(fixation)
    if out.suffix.lower() != ".png":
        raise InputError(f"{out}: expected an output path ending in .png")
    if not (ppd > 0 and ppd != float("inf")):
        raise InputError(f"--ppd: expected a positive number of pixels per degree, got {ppd!r}")
    rgb = read_rgb(image)

    import numpy as np
    import torch

    from fovea_ray.foveation import Foveator

    fov = Foveator(pixels_per_degree=ppd)
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise InputError(f"--device: cannot use {device!r} ({exc})") from None

    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(dev)
    y = fov(x, [[fx, fy]])
    result = y[0].permute(1, 2, 0).cpu().numpy()

    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(result).save(out, format="PNG")
    except OSError as exc:
        raise InputError(f"{out}: cannot write the image ({exc})") from None
    typer.echo(f"wrote {out} ({rgb.shape[1]}x{rgb.shape[0]}, fixation {fx:g},{fy:g}, {fov.pixels_per_degree:g} px/deg)")

    if panel:
        cutoff = fov.cutoff_map(rgb.shape[0], rgb.shape[1], [[fx, fy]])[0].numpy()
        panel_path = out.with_name(out.stem + "_panel.png")
        _write_panel(panel_path, rgb, result, cutoff, (fx, fy), fov.nyquist_cpd, fov.pixels_per_degree)
        typer.echo(f"wrote {panel_path}")
