"""Chunk checksums and damage: a deleted, truncated or bit-flipped chunk is named, never read.

Real Zarr v3 stores on disk (no Ray): the chunk objects are damaged on disk as a failing
disk or a partial copy would, and every read must either return the written values or
fail with one line naming the array, the chunk and its samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_store import CONTROLS, LAYERS, N, chunk_payload, fill, manifest

from fovea_ray.errors import DamagedStoreError
from fovea_ray.store import create_store, open_store

MAIN = "backbone.body.layer3.22.bn3"
ATTRS = {"config": {"arch": "resnet50"}, "versions": {}, "weights_checksum": "abc", "foveation": {}}


def make(path: Path, *, checksums: bool = True):
    st = create_store(
        path,
        n_samples=N,
        layers=LAYERS,
        control_stats=CONTROLS,
        chunk_size=5,
        samples=manifest(),
        attrs=ATTRS,
        checksums=checksums,
    )
    fill(st)
    return st


def chunk_file(store_path: Path, array: str, chunk: int) -> Path:
    """The object of sample-chunk ``chunk`` of ``array`` (Zarr v3's default ``c/i/0/...`` keys)."""
    ndim = {"values": 3, "fixation": 2, "window": 2, "bbox": 2}.get(array.rsplit("/", 1)[-1], 1)
    return store_path / array / "c" / "/".join([str(chunk)] + ["0"] * (ndim - 1))


def damage(path: Path, how: str) -> None:
    if how == "deleted":
        path.unlink()
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        data = bytearray(path.read_bytes())
        data[len(data) // 3] ^= 0x10
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["deleted", "truncated", "flipped"])
def test_damaged_activation_chunk_is_named_in_one_line(tmp_path, how):
    st = make(tmp_path / "s.zarr")
    assert st.checksummed and st.damage() == []
    damage(chunk_file(tmp_path / "s.zarr", f"activations/{MAIN}/values", 2), how)
    ro = open_store(tmp_path / "s.zarr")
    with pytest.raises(DamagedStoreError) as err:
        ro.activations(MAIN)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"activations/{MAIN}/values chunk 2 (samples 10-14)" in msg
    assert "fovea-ray extract" in msg and "verify" in msg and "--repair" in msg
    # The other layer is intact and still reads.
    other = "backbone.fpn.layer_blocks.0"
    np.testing.assert_array_equal(ro.activations(other)[10:15], chunk_payload(ro, 2)[0][other])
    found = ro.damage()
    assert [(d.array, d.chunk, d.samples) for d in found] == [(f"activations/{MAIN}/values", 2, (10, 15))]


@pytest.mark.parametrize("array", ["samples/label", "samples/error", "controls/pixels/values", "samples/anchor_score"])
def test_every_array_is_verified(tmp_path, array):
    st = make(tmp_path / "s.zarr")
    damage(chunk_file(tmp_path / "s.zarr", array, 1), "flipped")
    with pytest.raises(DamagedStoreError, match=f"{array} chunk 1 \\(samples 5-9\\)"):
        ro = open_store(tmp_path / "s.zarr")
        ro.samples  # noqa: B018 - the read under test
        ro.controls()
    assert [d.array for d in st.damage()] == [array]


def test_deleted_error_chunk_is_missing_not_silently_good(tmp_path):
    # A chunk of error strings that are all "" equals the fill value: it must still be
    # written, or deleting it would be invisible and failed samples would read as good.
    st = make(tmp_path / "s.zarr")
    damage(chunk_file(tmp_path / "s.zarr", "samples/error", 0), "deleted")
    with pytest.raises(DamagedStoreError, match="samples/error chunk 0 .*missing"):
        st.good()


def test_repair_marks_damaged_chunks_not_done_and_rewrites_manifest_rows(tmp_path):
    st = make(tmp_path / "s.zarr")
    damage(chunk_file(tmp_path / "s.zarr", f"activations/{MAIN}/values", 3), "deleted")
    damage(chunk_file(tmp_path / "s.zarr", "samples/label", 1), "truncated")
    found = st.damage()
    assert {(d.array, d.chunk) for d in found} == {(f"activations/{MAIN}/values", 3), ("samples/label", 1)}
    assert st.repair(found, samples=manifest()) == [1, 3]
    assert st.pending_chunks() == [1, 3]
    assert st.damage() == []  # the label rows are rewritten; chunk 3's results are no longer expected
    np.testing.assert_array_equal(st.samples["label"], manifest()["label"])
    for i in (1, 3):
        acts, controls, score, error = chunk_payload(st, i)
        st.write_chunk(i, activations=acts, controls=controls, anchor_score=score, error=error)
    assert st.pending_chunks() == [] and st.damage() == []
    np.testing.assert_array_equal(st.activations(MAIN)[15:20], chunk_payload(st, 3)[0][MAIN])


def test_store_without_checksums_opens_unverified(tmp_path):
    st = make(tmp_path / "old.zarr", checksums=False)
    ro = open_store(tmp_path / "old.zarr")
    assert not ro.checksummed and ro.damage() == []
    np.testing.assert_array_equal(ro.activations(MAIN)[0:5], chunk_payload(st, 0)[0][MAIN])


def test_results_say_whether_the_store_was_verified(tmp_path):
    from fovea_ray.cluster import Execution
    from fovea_ray.stats.battery import BatteryConfig
    from fovea_ray.stats.sweep import UNVERIFIED, run_store_tests

    cfg = BatteryConfig(permutations=0, mmd_permutations=0)
    run = Execution(use_ray=False)
    for checksums in (True, False):
        make(tmp_path / f"{checksums}.zarr", checksums=checksums)
        doc = run_store_tests(tmp_path / f"{checksums}.zarr", config=cfg, execution=run, include_controls=False)
        assert doc["store"]["verified"] is checksums
        assert (UNVERIFIED in doc["warnings"]) is not checksums


def test_to_xarray_refuses_a_missing_chunk_and_a_corrupt_one_fails_on_load(tmp_path):
    pytest.importorskip("xarray")
    make(tmp_path / "s.zarr")
    ds = open_store(tmp_path / "s.zarr").to_xarray()
    assert float(ds[MAIN].isnull().sum()) == 0
    damage(chunk_file(tmp_path / "s.zarr", f"activations/{MAIN}/values", 1), "deleted")
    with pytest.raises(DamagedStoreError, match=rf"activations/{MAIN}/values chunk 1 \(samples 5-9\): missing"):
        open_store(tmp_path / "s.zarr").to_xarray()  # it used to read as NaN, silently
    make(tmp_path / "t.zarr")
    damage(chunk_file(tmp_path / "t.zarr", f"activations/{MAIN}/values", 1), "flipped")
    ds = open_store(tmp_path / "t.zarr").to_xarray()
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        ds[MAIN].load()
