"""Sizes and ranges answered in one line naming the option or the file (issue 14, defect 6)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from _helpers import random_store, run_cli

PREPARE = ["prepare", "--ann-file", "a.json", "--images", "im", "--out", "m.parquet"]


def _error_lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.startswith(("Error:", "fovea-ray: error:"))]


@pytest.mark.parametrize(
    "args, option",
    [
        (
            ["prepare", "--ann-file", "a.json", "--images", "im", "--out", "m.parquet", "--n-per-type", "-1"],
            "--n-per-type",
        ),
        (["prepare", "--ann-file", "a.json", "--images", "im", "--out", "m.parquet", "--canvas", "100000"], "--canvas"),
        (["run", "--canvas", "100000"], "--canvas"),
        (["extract", "m.parquet", "--out", "s.zarr", "--batch-size", "0"], "--batch-size"),
        (["test", "s.zarr", "--out", "r.json", "--permutations", "-5"], "--permutations"),
    ],
)
def test_an_option_out_of_range_is_named(args, option):
    code, text = run_cli(args)
    lines = _error_lines(text)
    assert code == 2 and len(lines) == 1 and f"'{option}'" in lines[0], text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[test]\npermutations = -5\n", "[test] permutations must be >= 0, got -5"),
        ("[prepare]\ncanvas = 100000\n", "[prepare] canvas must be in [8, 4096], got 100000"),
        ("[extract]\nbatch_size = 0\n", "[extract] batch_size must be >= 1, got 0"),
        ("[test]\nalpha = 1.5\n", "[test] alpha must be in (0, 1), got 1.5"),
        ("seed = -1\n", "seed must be >= 0, got -1"),
        ("[prepare]\necc_band = [12.0, 8.0]\n", "[prepare] ecc_band must be [LO, HI] degrees"),
    ],
)
def test_a_toml_key_out_of_range_is_named_with_its_file(tmp_path, toml, message):
    """`[test] permutations = -5` used to run to "done" with no p-values."""
    config = tmp_path / "run.toml"
    config.write_text(toml)
    code, text = run_cli(["run", "--config", str(config), "--out", str(tmp_path / "out")])
    lines = _error_lines(text)
    assert code == 2 and len(lines) == 1, text
    assert lines[0] == f"fovea-ray: error: {config}: {message}" or lines[0].startswith(
        f"fovea-ray: error: {config}: {message}"
    )
    assert not (tmp_path / "out").exists()  # refused before any work


def test_huge_permutation_counts_are_refused_with_an_estimate(tmp_path):
    store = random_store(tmp_path / "s.zarr")
    for option, name in (("--permutations", "permutations"), ("--full-permutations", "full_permutations")):
        code, text = run_cli(["test", str(store), "--out", str(tmp_path / "r.json"), "--local", option, str(10**9)])
        lines = _error_lines(text)
        assert code == 2 and len(lines) == 1, text
        assert lines[0].startswith(f"fovea-ray: error: {name} = 1000000000: the test would need about ")
        assert " GB of memory for 200 samples" in lines[0]
    assert not (tmp_path / "r.json").exists()


@contextlib.contextmanager
def _full_disk(path: Path, before_filling=None):
    """A 2 MiB tmpfs at ``path``, ``before_filling(path)`` run, then filled up; skips where
    mounting is not allowed (not root)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        if before_filling is not None:
            before_filling(path)
        with contextlib.suppress(OSError), open(path / "filler", "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_a_full_disk_is_one_line_naming_the_path(ray_session, tmp_path):
    """ENOSPC in this process and in a Ray sink task: the path and "no space left on device"."""
    import json

    import numpy as np

    from fovea_ray.errors import disk_full
    from fovea_ray.pipeline.sink import write_chunks
    from fovea_ray.store import create_store, open_store

    store = random_store(tmp_path / "s.zarr")
    layer = open_store(store).layers[0]

    def empty_store(root: Path) -> None:
        src = open_store(store)
        create_store(
            root / "s.zarr",
            n_samples=200,
            layers={layer: (32, ["mean", "max"])},
            control_stats=["mean"],
            chunk_size=50,
            samples=src.samples,
            attrs={"config": {}, "status": "created"},
        )

    with _full_disk(tmp_path / "full", empty_store) as full:
        code, text = run_cli(["test", str(store), "--out", str(full / "r.json"), "--local", "--no-progress"])
        lines = _error_lines(text)
        assert code == 2 and lines == [
            f"fovea-ray: error: {full / 'r.json'}: no space left on device (free some space there, or write elsewhere)"
        ], text

        # The sink's ENOSPC (zarr's names no file) reaches the driver as a Ray task error.
        rng = np.random.default_rng(0)
        batch = {
            "chunk": np.array([1]),
            "n": np.array([50]),
            f"act:{layer}": rng.normal(size=(1, 50, 32, 2)).astype(np.float32),
            "controls": rng.normal(size=(1, 50, 3, 1)).astype(np.float32),
            "anchor_score": np.ones((1, 50), np.float32),
            "errors": np.array([json.dumps([""] * 50)]),
            "weights_checksum": np.array(["x"]),
            "seconds": np.array([0.0]),
            "forward_seconds": np.array([0.0]),
        }
        task = ray_session.remote(num_cpus=0.5)(write_chunks)
        with pytest.raises(Exception) as info:
            ray_session.get(task.remote(batch, store_path=str(full / "s.zarr")))
        line = disk_full(info.value)
        assert (
            line == f"{full / 's.zarr'} (chunk 1): no space left on device (free some space there, or write elsewhere)"
        )
