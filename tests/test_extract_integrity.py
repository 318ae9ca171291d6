"""A damaged store end to end: `test` names the chunk in one line, a rerun of `extract` repairs it.

Real local Ray, a real (tiny) network with random weights, a real Zarr store: a finished
store is copied and one activation chunk object is deleted, truncated or bit-flipped on
disk. `fovea-ray test` must stop with one line naming the chunk (never compute on a
damaged value), `fovea-ray verify` must list it, and a rerun of `extract` must recompute
exactly that chunk, giving values equal to the undamaged store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _helpers import run_cli
from test_extract import assert_same_store, make_manifest
from test_store_integrity import damage

from fovea_ray.store import open_store

CANVAS = 64
NET = "fovea_ray.model.examples:two_layer_cnn"
KW = dict(model=NET, layers=["act1", "act2"], stats=["mean", "max"], chunk_size=3, batch_size=3, progress=False)


@pytest.fixture(scope="module")
def manifest(synthetic_coco):
    df = make_manifest(synthetic_coco, 12)
    half = CANVAS // 2
    df["window_xywh"] = [[int(round(x)) - half, int(round(y)) - half, CANVAS, CANVAS] for x, y in df["fixation_xy"]]
    df["canvas"] = [[CANVAS, CANVAS]] * len(df)
    return df


@pytest.fixture(scope="module")
def reference(ray_session, manifest, tmp_path_factory) -> Path:
    from fovea_ray.pipeline import extract

    out = tmp_path_factory.mktemp("integrity") / "ref.zarr"
    summary = extract(manifest, out, **KW)
    assert summary.complete and summary.done == 12
    return out


def _test_cli(store: Path, tmp: Path, *extra: str) -> tuple[int, str]:
    return run_cli(
        [
            "test",
            str(store),
            "--layer",
            "act2",
            "--permutations",
            "0",
            "--mmd-permutations",
            "0",
            "--no-progress",
            "--out",
            str(tmp / "r.json"),
            *extra,
        ]
    )


def _chunk(store: Path, array: str, i: int) -> Path:
    ndim = 3 if array.endswith("values") else 1
    return store / array / "c" / "/".join([str(i)] + ["0"] * (ndim - 1))


@pytest.mark.parametrize("how", ["deleted", "truncated", "flipped"])
def test_damaged_chunk_is_named_by_test_in_one_line(reference, tmp_path, how):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    damage(_chunk(store, "activations/act2/values", 2), how)
    # --local reads in this process; without it the layer's read runs in a Ray task.
    code, text = _test_cli(store, tmp_path, *(["--local"] if how != "flipped" else []))
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert code == 2, text
    assert len(lines) == 1 and lines[0].startswith("fovea-ray: error: "), text
    assert "activations/act2/values chunk 2 (samples 6-8)" in lines[0]
    assert "fovea-ray extract" in lines[0] and "verify" in lines[0]
    assert not (tmp_path / "r.json").exists()  # nothing computed from a damaged value


def test_rerun_of_extract_recomputes_every_damaged_chunk(reference, manifest, tmp_path):
    from fovea_ray.pipeline import extract

    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    assert open_store(store).attrs["status"] == "complete"
    damage(_chunk(store, "activations/act2/values", 0), "deleted")
    damage(_chunk(store, "activations/act2/values", 2), "truncated")
    damage(_chunk(store, "activations/act1/values", 3), "flipped")
    damage(_chunk(store, "samples/label", 3), "deleted")  # a manifest-derived row: rewritten from it

    code, text = run_cli(["verify", str(store)])
    assert code == 1, text
    for where in (
        "act2/values chunk 0 (samples 0-2): missing",
        "act2/values chunk 2 (samples 6-8): checksum",
        "act1/values chunk 3 (samples 9-11): checksum",
        "samples/label chunk 3 (samples 9-11): missing",
    ):
        assert f"damaged: activations/{where}" in text or f"damaged: {where}" in text, (where, text)

    summary = extract(manifest, store, **KW)
    assert summary.complete and summary.chunks_run == 3 and summary.done == 9, summary.format()
    assert len(summary.repaired) == 4 and "damaged chunks found and recomputed (4)" in summary.format()
    assert open_store(store).damage() == []
    assert_same_store(reference, store)  # value for value (NaN == NaN), every array
    code, text = _test_cli(store, tmp_path, "--local")
    assert code == 0 and "samples used: 12 of 12" in text, text


def test_verify_repair_mark_only_marks_damaged_chunks_not_done(reference, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    damage(_chunk(store, "controls/pixels/values", 1), "flipped")
    code, text = run_cli(["verify", str(store), "--repair", "--mark-only"])
    assert code == 0 and "marked 1 chunks not done (1)" in text, text
    st = open_store(store)
    assert st.pending_chunks() == [1] and st.attrs["status"] == "incomplete" and st.damage() == []
    code, text = run_cli(["verify", str(reference)])
    assert code == 0 and "4 of 4 chunks done" in text and "no damage" in text, text


def test_verify_repair_of_a_store_from_an_in_memory_manifest_is_refused_before_marking(reference, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    damage(_chunk(store, "activations/act1/values", 1), "deleted")
    code, text = run_cli(["verify", str(store), "--repair", "--no-progress"])
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("damaged: ")]
    assert code == 2 and len(lines) == 1 and "in-memory manifest" in lines[0], text
    st = open_store(store)
    assert st.pending_chunks() == [] and len(st.damage()) == 1  # nothing marked


def test_verify_repair_recomputes_with_the_recorded_arguments(reference, manifest, tmp_path):
    from fovea_ray.data.manifest import write_manifest
    from fovea_ray.pipeline import extract

    path = write_manifest(manifest, tmp_path / "m.parquet")
    store = tmp_path / "s.zarr"
    assert extract(path, store, **KW).complete
    damage(_chunk(store, "activations/act2/values", 1), "truncated")
    damage(_chunk(store, "samples/label", 2), "deleted")
    code, text = run_cli(["verify", str(store), "--repair", "--no-progress"])
    assert code == 0, text
    assert "marked 2 chunks not done (1, 2)" in text
    assert "repaired: 2 chunks recomputed" in text and "verified, no damage" in text, text
    st = open_store(store)
    assert st.attrs["status"] == "complete" and st.pending_chunks() == [] and st.damage() == []
    assert_same_store(reference, store)
