"""``fovea-ray report``: figures and a self-contained report.html from results.json."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    results: Path = typer.Argument(..., help="results.json written by `fovea-ray test` or `fovea-ray run`."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: next to results.json)."),
    pairs: Path | None = typer.Option(None, "--pairs", help="A PNG of example input pairs to include."),
) -> None:
    """Render the study's figures (PNG) and a self-contained report.html (figures embedded, no network needed)."""
    from fovea_ray.report import render_report

    path = render_report(results, out, pairs_png=pairs)
    typer.echo(f"report: {path}")
    typer.echo(f"figures: {path.parent / 'figures'}")
