"""The CLI skeleton: every command has --help, errors are one line with no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ["run", "prepare", "extract", "test", "report", "foveate", "train", "pretrain", "convert", "info"]


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


def test_train_options_take_their_defaults_from_the_trainer_config():
    """`fovea-ray train` with only the required options builds exactly TrainConfig's defaults."""
    import dataclasses

    import typer.main

    from fovea_ray.cli import app
    from fovea_ray.train.config import TrainConfig

    cmd = typer.main.get_command(app).commands["train"]
    defaults = {p.name: p.default for p in cmd.params}
    names = {"ppd": "pixels_per_degree", "gpu": "use_gpu", "rpn_pre_nms": "rpn_pre_nms_top_n"}
    names |= {"rpn_post_nms": "rpn_post_nms_top_n", "rpn_batch": "rpn_batch_size_per_image"}
    names |= {"roi_batch": "box_batch_size_per_image"}
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    checked = 0
    for opt, value in defaults.items():
        field = names.get(opt, opt)
        if field in fields and fields[field] is not dataclasses.MISSING and opt != "milestones":
            assert value == fields[field], (opt, value, fields[field])
            checked += 1
    assert checked >= 25 and defaults["milestones"] is None  # None: TrainConfig's (2/3, 8/9), not a rounded copy
