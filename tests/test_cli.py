"""The CLI skeleton: every command has --help, errors are one line with no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ["run", "prepare", "extract", "test", "report", "foveate", "train", "info"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from fovea_ray.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_top_level_help_lists_every_command():
    out = _cli("--help")
    assert out.returncode == 0, out.stderr
    for cmd in COMMANDS:
        assert cmd in out.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_command_has_help(cmd):
    out = _cli(cmd, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def test_version():
    from fovea_ray import __version__

    out = _cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_unexpected_error_is_one_line_and_debug_shows_traceback():
    # `info` against an unreachable address never fails; use a command on a missing file.
    out = _cli("report", "/nonexistent/results.json")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[0].startswith("fovea-ray: error:")
