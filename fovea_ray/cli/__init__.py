"""The ``fovea-ray`` command line (typer).

Each command lives in its own module in this package and imports its heavy
dependencies (torch, ray) lazily, so ``--help`` stays fast. Errors: any exception that
reaches :func:`main` is printed as one line (``fovea-ray: error: ...``) with a non-zero
exit status; ``--debug`` re-raises it with its traceback.
"""

from __future__ import annotations

import sys

import typer

from fovea_ray import __version__

app = typer.Typer(
    name="fovea-ray",
    help="Ask a vision network whether it keeps separate neurons for sharp and blurred "
    "objects: foveate COCO, tap Mask R-CNN, and run classifier two-sample tests on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_STATE = {"debug": False}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fovea-ray {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """fovea-ray: resolution specialisation in detection networks, at dataset scale."""
    _STATE["debug"] = debug


def _register() -> None:
    # Imported here so each command module stays independent of the others.
    from fovea_ray.cli import convert, extract, foveate, info, prepare, pretrain, report, run, test, train, verify

    app.command("run")(run.run)
    app.command("prepare")(prepare.prepare)
    app.command("extract")(extract.extract)
    app.command("test")(test.test)
    app.command("report")(report.report)
    app.command("verify")(verify.verify)
    app.command("foveate")(foveate.foveate)
    app.command("train")(train.train)
    app.command("pretrain")(pretrain.pretrain)
    app.command("convert")(convert.convert)
    app.command("info")(info.info)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning uncaught errors into one line."""
    import click

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, prog_name="fovea-ray", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        typer.echo("fovea-ray: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("fovea-ray: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the CLI's one-line error contract
        if debug or _STATE["debug"]:
            raise
        from fovea_ray.errors import FoveaRayError, one_line

        kind = "" if isinstance(exc, FoveaRayError) else f"{type(exc).__name__}: "
        typer.echo(f"fovea-ray: error: {kind}{one_line(exc)}", err=True)
        typer.echo("(run with --debug for the traceback)", err=True) if not isinstance(exc, FoveaRayError) else None
        sys.exit(2)
