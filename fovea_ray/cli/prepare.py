"""``fovea-ray prepare``: build the type-1/type-0 sample manifest from COCO annotations."""

from __future__ import annotations

import typer

from fovea_ray.errors import InputError
from fovea_ray.names import MAX_CANVAS


def _band(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--ecc-band must be LO,HI in degrees (e.g. 8,12), got {text!r}") from None
    return lo, hi


def prepare(
    ann_file: str = typer.Option(..., "--ann-file", help="COCO instances JSON (local path or fsspec URL)."),
    images: str = typer.Option(
        ..., "--images", help="Image root folder (local or fsspec URL); file_name is relative to it."
    ),
    out: str = typer.Option(
        ...,
        "--out",
        help="Manifest to write (parquet; a path or URL such as s3://bucket/m.parquet); the summary goes "
        "next to it as NAME.summary.json.",
    ),
    n_per_type: int | None = typer.Option(
        None, "--n-per-type", min=1, help="Cap on samples per type (default: as many as the data allows)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed for every random choice; same inputs and seed give the same bytes."
    ),
    canvas: int = typer.Option(
        640,
        "--canvas",
        min=8,
        max=MAX_CANVAS,
        help=f"Model canvas, px (square, at most {MAX_CANVAS}); the window is this size in source pixels.",
    ),
    ppd: float = typer.Option(30.0, "--ppd", help="Pixels per degree of visual angle (must match the foveator's)."),
    categories: list[str] | None = typer.Option(
        None, "--categories", help="Restrict to these category names or ids (repeat or comma-separate)."
    ),
    ecc_band: str = typer.Option(
        "8,12", "--ecc-band", help="Eccentricity band LO,HI (degrees) of type-0 object centres."
    ),
    min_area: float = typer.Option(
        32.0**2, "--min-area", help="Smallest anchor area, px^2 (COCO 'medium' threshold by default)."
    ),
    max_window_fraction: float = typer.Option(
        0.25, "--max-window-fraction", help="Largest anchor box area as a fraction of the window's."
    ),
    preview: int = typer.Option(
        0, "--preview", min=0, help="Also render N type-1/type-0 pairs as the model will see them (PNG)."
    ),
    preview_out: str | None = typer.Option(
        None, "--preview-out", help="Preview PNG path or URL (default: NAME.preview.png next to the manifest)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the output paths."),
) -> None:
    """Build the type-1/type-0 sample manifest from COCO annotations.

    Type 1 puts the anchor object at the fixation (sharp); type 0 puts it in the periphery at an
    eccentricity inside --ecc-band (blurred). One sample per image; per category as many type-1 as
    type-0 samples, as many as the data allows (an exact optimum, not first-come). Prints the counts
    per category and type, and writes them as JSON.
    """
    from fovea_ray.data.manifest import build_manifest, summary_path, write_manifest

    df = build_manifest(
        ann_file,
        images,
        n_per_type=n_per_type,
        seed=seed,
        canvas=canvas,
        pixels_per_degree=ppd,
        categories=categories,
        ecc_band=_band(ecc_band),
        min_area=min_area,
        max_window_fraction=max_window_fraction,
    )
    s = df.attrs["summary"]
    miss = s["images_missing"]
    if miss["count"]:
        first = ", ".join(miss["first"]) + (", ..." if miss["count"] > len(miss["first"]) else "")
        typer.echo(
            f"warning: {miss['count']} of {s['images_listed']} images listed in {ann_file} are missing "
            f"under {images} (first: {first}); excluded",
            err=True,
        )
    path = write_manifest(df, out)
    if not quiet:
        _print_summary(s)
    typer.echo(f"manifest: {path} ({s['total']} samples)")
    typer.echo(f"summary:  {summary_path(path)}")
    if preview:
        from fovea_ray.data.preview import write_preview
        from fovea_ray.io import with_suffix_name

        png = preview_out or with_suffix_name(path, ".preview.png")
        write_preview(df, png, preview, seed=seed)
        typer.echo(f"preview:  {png}")


def _print_summary(s: dict) -> None:
    cats = [c for c in s["categories"] if c["type1"] or c["type0"]]
    width = max([len(c["name"]) for c in cats] + [8])
    typer.echo(f"{'category':<{width}}  {'id':>4}  {'eligible':>8}  {'type 1':>6}  {'type 0':>6}")
    for c in cats:
        typer.echo(f"{c['name']:<{width}}  {c['id']:>4}  {c['eligible_images']:>8}  {c['type1']:>6}  {c['type0']:>6}")
    typer.echo(
        f"{'total':<{width}}  {'':>4}  {s['eligible_images']:>8}  {s['per_type']['1']:>6}  {s['per_type']['0']:>6}"
    )
    unused = sum(1 for c in s["categories"] if c["eligible_images"] and not c["type1"])
    typer.echo(
        f"{s['total']} samples in {s['n_categories']} categories"
        + (f" ({unused} more categories have eligible images but could not be paired)" if unused else "")
        + f"; balanced optimum {s['optimum_total']} (first-come assignment: {s['first_come_total']})"
    )
    if s["n_per_type_requested"] and s["per_type"]["1"] < s["n_per_type_requested"]:
        typer.echo(
            f"note: --n-per-type {s['n_per_type_requested']} asked for more than the data allows "
            f"({s['per_type']['1']} per type)"
        )
