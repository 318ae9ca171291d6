"""``fovea-ray foveate``: writes the foveated PNG and the --panel figure; bad input is one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from fovea_ray.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture()
def image(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(path)
    return path


def test_foveate_writes_png_and_panel(image, tmp_path):
    out = tmp_path / "sub" / "out.png"
    res = _cli("foveate", str(image), "--fixation", "40,60", "--ppd", "60", "--out", str(out), "--panel")
    assert res.returncode == 0, res.stderr
    src = np.asarray(Image.open(image))
    got = np.asarray(Image.open(out))
    assert got.shape == src.shape and got.dtype == np.uint8
    # Sharp at the fixation (fovea radius ~42 px at 60 px/deg), blurred far from it.
    assert np.array_equal(got[50:70, 30:50], src[50:70, 30:50])
    assert np.abs(got[:20, 140:].astype(int) - src[:20, 140:]).mean() > 5
    panel = Image.open(tmp_path / "sub" / "out_panel.png")
    assert panel.width > 2.5 * panel.height  # three images side by side
    assert np.asarray(panel.convert("L")).std() > 10


@pytest.mark.parametrize(
    "args, needle",
    [
        (["/nonexistent/in.png", "--fixation", "1,2"], "/nonexistent/in.png"),
        (["{bad}", "--fixation", "1,2"], "cannot read the image"),
        (["{img}", "--fixation", "1x2"], "--fixation"),
        (["{img}", "--fixation", "1,nan"], "--fixation"),
        (["{img}", "--fixation", "1,2", "--ppd", "0"], "--ppd"),
    ],
)
def test_bad_input_is_one_line(args, needle, image, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    args = [a.format(bad=bad, img=image) for a in args]
    res = _cli("foveate", *args, "--out", str(tmp_path / "o.png"))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fovea-ray: error:") and needle in lines[0], res.stderr
    assert not (tmp_path / "o.png").exists()
