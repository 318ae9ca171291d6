"""The ``fovea-ray`` command line (typer).

Each command lives in its own module in this package and imports its heavy
dependencies (torch, ray) lazily, so ``--help`` stays fast. Errors: any exception that
reaches :func:`main` is printed as one line (``fovea-ray: error: ...``) with a non-zero
exit status; ``--debug`` re-raises it with its traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

import typer

from fovea_ray import __version__

if TYPE_CHECKING:
    from fovea_ray.interrupts import Interrupted

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


def _click_errors() -> tuple[type[BaseException], ...]:
    """click's usage-error base class, and the one of the copy of click that typer >= 0.2x vendors.

    typer raises its own ``BadParameter`` (for ``min=``/``max=`` and type errors), which is not a
    ``click.ClickException``: caught as a generic error, it lost the option's name.
    """
    import click

    try:
        from typer._click.exceptions import ClickException as vendored
    except ImportError:
        return (click.ClickException,)
    return (click.ClickException, vendored)


_CLICK_ERRORS = _click_errors()


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
    storage_options: str | None = typer.Option(
        None,
        "--storage-options",
        help="fsspec options for s3:// (or other URL) inputs and outputs: JSON or KEY=VALUE,... "
        "(e.g. endpoint_url=http://127.0.0.1:9000). Default: FOVEA_RAY_STORAGE_OPTIONS, else the "
        "AWS_* environment variables and AWS_ENDPOINT_URL, read by s3fs.",
    ),
) -> None:
    """fovea-ray: resolution specialisation in detection networks, at dataset scale."""
    _STATE["debug"] = debug
    if storage_options is not None:
        import os

        from fovea_ray.io import STORAGE_OPTIONS_ENV, parse_storage_options

        parse_storage_options(storage_options)  # a bad value fails here, naming the option
        # The environment carries them to every layer and to the Ray workers this process starts.
        os.environ[STORAGE_OPTIONS_ENV] = storage_options


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


def _stop(exc: Interrupted) -> NoReturn:
    """Say what was done before the signal, and exit 128 + its number."""
    typer.echo(f"fovea-ray: interrupted ({exc.signal_name}){': ' + exc.progress if exc.progress else ''}", err=True)
    sys.exit(exc.exit_code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning uncaught errors into one line.

    SIGINT and SIGTERM stop a command cleanly (:mod:`fovea_ray.interrupts`): one line
    saying what was done, and exit status 130 or 143.
    """
    import click

    from fovea_ray.interrupts import Interrupted, stop_on_signals

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        with stop_on_signals():
            code = app(args=args, prog_name="fovea-ray", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        _stop(exc)
    except (click.exceptions.Abort, KeyboardInterrupt):
        typer.echo("fovea-ray: interrupted", err=True)
        sys.exit(130)
    except _CLICK_ERRORS as exc:
        exc.show()  # names the option: "Invalid value for '--n-per-type': ..."
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the CLI's one-line error contract
        from fovea_ray.interrupts import interruption_in

        wrapped = interruption_in(exc)
        if wrapped is not None:  # a signal that landed inside Ray's core (SystemError)
            _stop(wrapped)
        if debug or _STATE["debug"]:
            raise
        from fovea_ray.errors import FoveaRayError, disk_full, one_line

        full = disk_full(exc)
        if full is not None:
            typer.echo(f"fovea-ray: error: {full}", err=True)
            sys.exit(2)
        kind = "" if isinstance(exc, FoveaRayError) else f"{type(exc).__name__}: "
        typer.echo(f"fovea-ray: error: {kind}{one_line(exc)}", err=True)
        typer.echo("(run with --debug for the traceback)", err=True) if not isinstance(exc, FoveaRayError) else None
        sys.exit(2)
    # typer returns (not raises) an exit code for a KeyboardInterrupt it caught itself when
    # standalone_mode is False: that is how Ctrl-C used to end in a silent exit 0.
    if isinstance(code, int) and code:
        if code == 130:
            typer.echo("fovea-ray: interrupted", err=True)
        sys.exit(code)
