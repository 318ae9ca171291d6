"""``fovea-ray report``: figures and a self-contained report.html from results.json."""

from __future__ import annotations

import typer


def report(
    results: str = typer.Argument(
        ..., help="results.json written by `fovea-ray test` or `fovea-ray run` (path or URL)."
    ),
    out: str | None = typer.Option(
        None, "--out", "-o", help="Output folder, path or URL (default: next to results.json)."
    ),
    pairs: str | None = typer.Option(None, "--pairs", help="A PNG of example input pairs to include (path or URL)."),
) -> None:
    """Render the study's figures (PNG) and a self-contained report.html (figures embedded, no network needed)."""
    from fovea_ray import io as fio
    from fovea_ray.report import render_report

    path = render_report(results, out, pairs_png=pairs)
    typer.echo(f"report: {path}")
    typer.echo(f"figures: {fio.join(fio.parent(path), 'figures')}")
