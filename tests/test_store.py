"""The Zarr v3 activation store: real Zarr on disk, read back with numpy and xarray."""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fovea_ray.errors import InputError
from fovea_ray.store import ChunkPlan, create_store, diff_configs, open_store

N, K = 23, 5  # the last chunk is short (3 samples)
LAYERS = {"backbone.body.layer3.22.bn3": (7, ["mean", "median", "max"]), "backbone.fpn.layer_blocks.0": (4, ["max"])}
CONTROLS = ["mean", "median", "max", "hf_energy"]


def manifest(n: int = N, seed: int = 0) -> pd.DataFrame:
    """A manifest-shaped table (the columns read_manifest returns)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sample": np.arange(n, dtype=np.int64),
            "image_id": rng.integers(1, 10**6, n),
            "file_name": [f"{i:012d}.jpg" for i in range(n)],
            "image_uri": [f"/data/{i:012d}.jpg" for i in range(n)],
            "image_width": np.full(n, 640),
            "image_height": np.full(n, 480),
            "ann_id": rng.integers(1, 10**9, n),
            "category_id": rng.integers(1, 91, n),
            "bbox": [list(rng.uniform(0, 300, 4)) for _ in range(n)],
            "label": (np.arange(n) % 2).astype(np.int8),
            "fixation_xy": [list(rng.uniform(0, 600, 2)) for _ in range(n)],
            "eccentricity_deg": rng.uniform(0, 10, n),
            "window_xywh": [list(rng.integers(-50, 600, 4)) for _ in range(n)],
            "canvas": [[256, 256]] * n,
            "pixels_per_degree": np.full(n, 30.0),
        }
    )


def chunk_payload(store, i: int, seed: int = 1):
    a, b = store.plan.bounds(i)
    rng = np.random.default_rng(seed + i)
    acts = {name: rng.standard_normal((b - a, c, len(s))).astype(np.float32) for name, (c, s) in LAYERS.items()}
    controls = rng.uniform(size=(b - a, 3, len(CONTROLS))).astype(np.float32)
    score = rng.uniform(size=b - a).astype(np.float32)
    error = ["" if j % 4 else f"unreadable image ü {j} " + "x" * 200 for j in range(a, b)]
    return acts, controls, score, error


@pytest.fixture()
def store(tmp_path):
    return create_store(
        tmp_path / "s.zarr",
        n_samples=N,
        layers=LAYERS,
        control_stats=CONTROLS,
        chunk_size=K,
        samples=manifest(),
        attrs={
            "config": {"arch": "resnet50", "seed": 0},
            "versions": {"zarr": "3"},
            "weights_checksum": "abc",
            "foveation": {"e2": 2.3},
        },
    )


def fill(store):
    for i in store.plan:
        acts, controls, score, error = chunk_payload(store, i)
        store.write_chunk(i, activations=acts, controls=controls, anchor_score=score, error=error)


def test_chunk_plan_covers_every_sample_once():
    plan = ChunkPlan(23, 5)
    assert plan.n_chunks == 5
    covered = np.concatenate([np.arange(*plan.bounds(i)) for i in plan])
    np.testing.assert_array_equal(covered, np.arange(23))
    with pytest.raises(IndexError):
        plan.bounds(5)
    with pytest.raises(ValueError):
        ChunkPlan(0, 5)


def test_new_store_is_empty_and_pending(store):
    assert store.pending_chunks() == list(range(5))
    s = store.samples
    assert not s["done"].any() and (s["error"] == "").all()
    assert np.isnan(store.activations("backbone.body.layer3.22.bn3")).all()
    assert store.attrs["status"] == "created" and store.attrs["weights_checksum"] == "abc"
    assert store.layers == list(LAYERS)


def test_round_trip(store):
    fill(store)
    st = open_store(store.path)
    assert st.pending_chunks() == []
    for name, (c, stats) in LAYERS.items():
        want = np.concatenate([chunk_payload(st, i)[0][name] for i in st.plan])
        got = st.activations(name)
        assert got.dtype == np.float32 and got.shape == (N, c, len(stats))
        np.testing.assert_array_equal(got, want)
        assert st.stat_names(name) == stats
    np.testing.assert_array_equal(
        st.activations("backbone.body.layer3.22.bn3", stats=["max", "mean"]),
        st.activations("backbone.body.layer3.22.bn3")[:, :, [2, 0]],
    )
    np.testing.assert_array_equal(st.controls(), np.concatenate([chunk_payload(st, i)[1] for i in st.plan]))
    assert st.control_stat_names == CONTROLS

    m, s = manifest(), st.samples
    assert list(s.columns[:10]) == [
        "sample",
        "image_id",
        "ann_id",
        "category_id",
        "label",
        "fixation",
        "eccentricity_deg",
        "anchor_score",
        "done",
        "error",
    ]
    for col in ("sample", "image_id", "ann_id", "category_id", "label", "eccentricity_deg", "file_name"):
        np.testing.assert_array_equal(s[col].to_numpy(), m[col].to_numpy())
    np.testing.assert_allclose(np.stack(s["fixation"]), np.stack(m["fixation_xy"]))
    errors = sum((chunk_payload(st, i)[3] for i in st.plan), [])
    assert s["error"].tolist() == errors  # long and non-ASCII reasons survive
    assert s["done"].all()
    np.testing.assert_array_equal(st.good(), np.array([e == "" for e in errors]))


def test_xarray_opens_groups_with_named_dims(store):
    xr = pytest.importorskip("xarray")
    fill(store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no consolidated-metadata fallback warnings either
        ds = xr.open_zarr(store.path, group="samples")
        assert dict(ds.sizes) == {"sample": N, "xy": 2, "xywh": 4}
        assert ds["fixation"].dims == ("sample", "xy") and ds["window"].dims == ("sample", "xywh")
        assert ds["error"].values.tolist() == store.samples["error"].tolist()
        np.testing.assert_array_equal(ds["window"].values, np.stack(manifest()["window_xywh"]))
        for name, (c, stats) in LAYERS.items():
            g = xr.open_zarr(store.path, group=f"activations/{name}")
            assert g["values"].dims == ("sample", "channel", "stat")
            assert dict(g.sizes) == {"sample": N, "channel": c, "stat": len(stats)}
            assert g["stat"].values.tolist() == stats
            assert g["values"].attrs["module"] == name
            np.testing.assert_array_equal(g["values"].values, store.activations(name))
        c = xr.open_zarr(store.path, group="controls/pixels")
        assert c["values"].dims == ("sample", "rgb", "stat")
    full = store.to_xarray()
    np.testing.assert_array_equal(
        full["backbone.fpn.layer_blocks.0"].values, store.activations("backbone.fpn.layer_blocks.0")
    )
    assert full["controls"].dims == ("sample", "rgb", "controls:stat")


def test_status_update_persists_and_keeps_xarray_quiet(store):
    xr = pytest.importorskip("xarray")
    store.update_attrs(status="complete", summary={"done": 23})
    assert open_store(store.path).attrs["status"] == "complete"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(store.path, group="samples")
    # The root zarr.json is plain JSON that any Zarr v3 reader sees.
    meta = json.loads((Path(store.path) / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["attributes"]["summary"] == {"done": 23}


def test_done_only_after_a_complete_write(store):
    # Values written by hand without the done flag (a writer killed between the two)
    store._root["activations/backbone.fpn.layer_blocks.0/values"][0:5] = np.ones((5, 4, 1), np.float32)
    assert 0 in store.pending_chunks()
    acts, controls, score, error = chunk_payload(store, 1)
    store.write_chunk(1, activations=acts, controls=controls, anchor_score=score, error=error)
    assert store.pending_chunks() == [0, 2, 3, 4]
    # A damaged done object counts as not done rather than breaking the resume.
    done_file = Path(store.path) / "samples" / "done" / "c" / "1"
    assert done_file.exists()
    done_file.write_bytes(b"\x00garbage")
    assert open_store(store.path).pending_chunks() == [0, 1, 2, 3, 4]


def test_write_chunk_validates(store):
    acts, controls, score, error = chunk_payload(store, 4)
    assert acts["backbone.fpn.layer_blocks.0"].shape[0] == 3  # short last chunk
    with pytest.raises(ValueError, match="shape"):
        store.write_chunk(3, activations=acts, controls=controls, anchor_score=score, error=error)
    with pytest.raises(ValueError, match="layers"):
        store.write_chunk(
            4,
            activations={"x": acts["backbone.fpn.layer_blocks.0"]},
            controls=controls,
            anchor_score=score,
            error=error,
        )
    with pytest.raises(ValueError, match="error strings"):
        store.write_chunk(4, activations=acts, controls=controls, anchor_score=score, error=error[:2])
    with pytest.raises(IndexError):
        store.write_chunk(5, activations=acts, controls=controls, anchor_score=score, error=error)
    with pytest.raises(PermissionError):
        open_store(store.path).write_chunk(4, activations=acts, controls=controls, anchor_score=score, error=error)
    assert store.pending_chunks() == list(range(5))


def test_bad_paths(tmp_path, store):
    with pytest.raises(InputError, match="does not exist"):
        open_store(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="not a fovea-ray store"):
        open_store(tmp_path / "plain")
    import zarr

    zarr.open_group(tmp_path / "other.zarr", mode="w")
    with pytest.raises(InputError, match="not a fovea-ray store"):
        open_store(tmp_path / "other.zarr")
    with pytest.raises(InputError, match="already exists"):
        create_store(
            store.path, n_samples=N, layers=LAYERS, control_stats=CONTROLS, chunk_size=K, samples=manifest(), attrs={}
        )
    with pytest.raises(InputError, match="rows"):
        create_store(
            tmp_path / "x.zarr",
            n_samples=N + 1,
            layers=LAYERS,
            control_stats=CONTROLS,
            chunk_size=K,
            samples=manifest(),
            attrs={},
        )


def test_minimal_samples_table(tmp_path):
    """Tests of other modules build stores from a few columns (fixation_x/_y accepted)."""
    df = pd.DataFrame(
        {
            "image_id": [1, 2, 3],
            "ann_id": [4, 5, 6],
            "category_id": [1, 1, 2],
            "label": [0, 1, 0],
            "fixation_x": [1.0, 2.0, 3.0],
            "fixation_y": [4.0, 5.0, 6.0],
        }
    )
    st = create_store(
        tmp_path / "m.zarr",
        n_samples=3,
        layers={"l": (2, ["mean"])},
        control_stats=["mean"],
        chunk_size=2,
        samples=df,
        attrs={},
    )
    s = st.samples
    assert s["sample"].tolist() == [0, 1, 2] and np.stack(s["fixation"])[:, 1].tolist() == [4.0, 5.0, 6.0]
    assert s["file_name"].tolist() == ["", "", ""]
    # The store's own table (one `fixation` column of (x, y)) makes the same store again.
    again = create_store(
        tmp_path / "again.zarr",
        n_samples=3,
        layers={"l": (2, ["mean"])},
        control_stats=["mean"],
        chunk_size=2,
        samples=s,
        attrs={},
    )
    np.testing.assert_array_equal(np.stack(again.samples["fixation"]), [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]])


def _write_one(path: str, i: int) -> int:
    st = open_store(path, mode="r+")
    acts, controls, score, error = chunk_payload(st, i)
    st.write_chunk(i, activations=acts, controls=controls, anchor_score=score, error=error)
    return i


def test_concurrent_writers_in_processes(store):
    """Chunk-aligned writes from separate processes never clobber each other."""
    import multiprocessing as mp

    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        assert sorted(pool.map(_write_one, [store.path] * 5, [4, 0, 3, 1, 2])) == [0, 1, 2, 3, 4]
    st = open_store(store.path)
    assert st.pending_chunks() == []
    for name in LAYERS:
        np.testing.assert_array_equal(
            st.activations(name), np.concatenate([chunk_payload(st, i)[0][name] for i in st.plan])
        )


def test_diff_configs_names_what_differs():
    a = {"arch": "resnet101", "layers": ["a", "b"], "foveation": {"e2": 2.3, "ct0": 0.015625}, "seed": 0}
    assert diff_configs(a, json.loads(json.dumps(a))) == []
    b = {**a, "layers": ("a", "b"), "foveation": {"e2": 2.5, "ct0": 0.015625}, "seed": 1, "new": True}
    d = diff_configs(a, b)
    assert d == [
        "foveation.e2: store has 2.3, this run has 2.5",
        'new: store has "<absent>", this run has true',
        "seed: store has 0, this run has 1",
    ]
