"""The extraction pipeline end to end: real local Ray, real torchvision Mask R-CNN, real Zarr.

Small on purpose (2 cores): ResNet-50 FPN with random weights, a 128 px canvas, a dozen
samples in chunks of 4. The reference for the activations is the in-process tapped
forward (``fovea_ray.taps.capture`` on ``render_batch`` output, one image at a time).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _helpers import chunks_done, run_cli, signal_when

from fovea_ray.errors import InputError
from fovea_ray.store import open_store

CANVAS = 128
PPD = 16.0
LAYERS = ["backbone.body.layer1.0.bn3", "backbone.body.layer2.3.bn3"]
STATS = ["mean", "max"]
KW = dict(arch="resnet50", layers=LAYERS, stats=STATS, chunk_size=4, batch_size=3, seed=0, progress=False)


def make_manifest(root: Path, n: int) -> pd.DataFrame:
    """A manifest-shaped table over the synthetic COCO: one sample per image, its first object.

    Built here from the annotations with plain json so the pipeline's tests do not depend
    on the sample-design code; type 1 fixates the object, type 0 fixates 40 px beside it.
    """
    coco = json.loads((root / "instances.json").read_text())
    images = {im["id"]: im for im in coco["images"]}
    first: dict[int, dict] = {}
    for ann in coco["annotations"]:
        first.setdefault(ann["image_id"], ann)
    rows = []
    for i, (image_id, ann) in enumerate(sorted(first.items())[:n]):
        im = images[image_id]
        x, y, w, h = ann["bbox"]
        cx, cy = x + w / 2, y + h / 2
        label = i % 2
        fx, fy = (cx, cy) if label else (cx + 40.0, cy)
        rows.append(
            {
                "sample": i,
                "image_id": image_id,
                "file_name": im["file_name"],
                "image_uri": str(root / "images" / im["file_name"]),
                "image_width": im["width"],
                "image_height": im["height"],
                "ann_id": ann["id"],
                "category_id": ann["category_id"],
                "bbox": [float(v) for v in ann["bbox"]],
                "label": label,
                "fixation_xy": [fx, fy],
                "eccentricity_deg": float(np.hypot(cx - fx, cy - fy) / PPD),
                "window_xywh": [int(round(fx)) - CANVAS // 2, int(round(fy)) - CANVAS // 2, CANVAS, CANVAS],
                "canvas": [CANVAS, CANVAS],
                "pixels_per_degree": PPD,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def manifest(synthetic_coco) -> pd.DataFrame:
    return make_manifest(synthetic_coco, 6)


@pytest.fixture(scope="module")
def reference_store(ray_session, manifest, tmp_path_factory) -> Path:
    """One uninterrupted full-model run (2 chunks: 4 + 2 samples; batches of 3 + 1, then 2)."""
    from fovea_ray.pipeline import extract

    out = tmp_path_factory.mktemp("ref") / "store.zarr"
    summary = extract(manifest, out, **KW)
    assert summary.done == 6 and summary.failed == 0 and summary.complete
    return out


def reference_forward(manifest: pd.DataFrame, rows) -> dict[str, np.ndarray]:
    """The in-process tapped forward, one sample at a time (no Ray, no chunks, no batching).

    Backbone-only: the backbone layers' maps are the same in a full forward, and it is cheaper.
    """
    import torch

    from fovea_ray.data.render import decode_image, render_batch
    from fovea_ray.foveation import Foveator
    from fovea_ray.model import build_model
    from fovea_ray.taps import capture

    model = build_model("resnet50", None, (CANVAS, CANVAS), seed=0)
    fov = Foveator(pixels_per_degree=PPD)
    out: dict[str, list] = {layer: [] for layer in LAYERS}
    for i in rows:
        r = manifest.iloc[i]
        img = decode_image(Path(r["image_uri"]).read_bytes())
        x = render_batch([img], [r["fixation_xy"]], [r["window_xywh"]], (CANVAS, CANVAS), fov)
        with torch.inference_mode():
            taps = capture(model, x, LAYERS, STATS, backbone_only=True)
        for layer in LAYERS:
            out[layer].append(taps[layer][0].numpy())
    return {k: np.stack(v) for k, v in out.items()}


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    st = open_store(path)
    out = {f"act:{layer}": st.activations(layer) for layer in st.layers}
    out["controls"] = st.controls()
    s = st.samples
    for col in s.columns:
        out[col] = np.stack(s[col].to_numpy()) if col == "fixation" else s[col].to_numpy()
    return out


def assert_same_store(a: Path, b: Path) -> None:
    x, y = arrays_of(a), arrays_of(b)
    assert x.keys() == y.keys()
    for k in x:
        if x[k].dtype.kind == "f":
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)  # NaN == NaN here
        else:
            assert list(x[k]) == list(y[k]), k


def test_store_holds_every_sample_equal_to_in_process_forward(reference_store, manifest):
    st = open_store(reference_store)
    s = st.samples
    assert st.layers == LAYERS and st.stat_names(LAYERS[0]) == STATS
    assert s["done"].all() and (s["error"] == "").all() and st.pending_chunks() == []
    np.testing.assert_array_equal(s["image_id"], manifest["image_id"])
    ref = reference_forward(manifest, range(len(manifest)))
    for layer in LAYERS:
        got = st.activations(layer)
        assert got.shape == ref[layer].shape and np.isfinite(got).all()
        np.testing.assert_allclose(got, ref[layer], rtol=1e-5, atol=1e-5)
    scores = s["anchor_score"].to_numpy()
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    c = st.controls()
    assert c.shape[:2] == (6, 3) and np.isfinite(c).all()
    attrs = st.attrs
    assert attrs["status"] == "complete" and attrs["config"]["arch"] == "resnet50"
    assert attrs["weights_checksum"] == attrs["config"]["weights_checksum"] and len(attrs["weights_checksum"]) == 64
    assert attrs["foveation"]["pixels_per_degree"] == PPD and "torch" in attrs["versions"]
    assert attrs["last_run"]["done"] == 6


def test_xarray_opens_the_pipeline_store(reference_store):
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(reference_store, group=f"activations/{LAYERS[1]}")
    assert ds["values"].dims == ("sample", "channel", "stat") and ds.sizes["sample"] == 6
    assert ds["stat"].values.tolist() == STATS
    smp = xr.open_zarr(reference_store, group="samples")
    assert smp["fixation"].dims == ("sample", "xy") and bool(smp["done"].all())


def test_resume_processes_only_unfinished_chunks(reference_store, manifest, tmp_path):
    from fovea_ray.pipeline import extract

    out = tmp_path / "store.zarr"
    shutil.copytree(reference_store, out)
    again = extract(manifest, out, **KW)  # nothing left to do
    assert again.chunks_run == 0 and again.skipped == 6 and again.complete
    # Undo chunk 1 (samples 4, 5) as an interrupted run would leave it: values gone, not done.
    import zarr

    root = zarr.open_group(out, mode="r+", use_consolidated=False)
    root["samples/done"][4:6] = False
    for layer in LAYERS:
        root[f"activations/{layer}/values"][4:6] = np.nan
    resumed = extract(manifest, out, **KW)
    assert resumed.chunks_run == 1 and resumed.done == 2 and resumed.skipped == 4 and resumed.complete
    assert_same_store(out, reference_store)


def test_a_different_config_is_refused(reference_store, manifest):
    from fovea_ray.pipeline import extract

    with pytest.raises(InputError, match=r"seed: store has 0, this run has 1") as err:
        extract(manifest, reference_store, **{**KW, "seed": 1})
    assert "weights_checksum" in str(err.value)  # other seed, other random weights
    with pytest.raises(InputError, match=r"stats: store has \[\"mean\", \"max\"\], this run has \[\"mean\"\]"):
        extract(manifest, reference_store, **{**KW, "stats": ["mean"]})
    moved = manifest.copy()
    moved.at[2, "fixation_xy"] = [1.0, 2.0]
    with pytest.raises(InputError, match="manifest_checksum"):
        extract(moved, reference_store, **KW)


def _salted(manifest: pd.DataFrame, root: Path, tmp: Path) -> tuple[pd.DataFrame, dict[int, str]]:
    """The first 7 samples' images replaced by the bad kinds; returns the expected failures."""
    from PIL import Image

    src = [Path(u) for u in manifest["image_uri"]]
    good = src[0].read_bytes()

    def save(img, name, fmt, **kw):
        path = tmp / name
        img.save(path, fmt, **kw)
        return path

    bad = {
        0: (tmp / "corrupt.jpg", "cannot decode"),
        1: (tmp / "truncated.jpg", "truncated"),
        2: (tmp / "empty.jpg", "empty"),
        3: (tmp / "missing.jpg", "missing file"),
        4: (save(Image.open(src[4]).convert("L"), "grey.jpg", "JPEG"), None),
        5: (save(Image.open(src[5]).convert("CMYK"), "cmyk.jpg", "JPEG"), None),
        6: (save(Image.open(src[6]).convert("RGBA"), "alpha.png", "PNG"), None),
    }
    (tmp / "corrupt.jpg").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))
    (tmp / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp / "empty.jpg").write_bytes(b"")
    df = manifest.copy()
    for i, (path, _) in bad.items():
        df.at[i, "image_uri"] = str(path)
    return df, {i: why for i, (_, why) in bad.items() if why}


def test_bad_images_are_recorded_and_the_run_finishes(ray_session, synthetic_coco, tmp_path):
    from fovea_ray.pipeline import extract

    df, expect = _salted(make_manifest(synthetic_coco, 9), synthetic_coco, tmp_path)
    out = tmp_path / "salted.zarr"
    summary = extract(df, out, **{**KW, "backbone_only": True})
    assert summary.complete and summary.done == 9 and summary.failed == len(expect)
    assert [f[0] for f in summary.failures] == sorted(expect)
    text = summary.format()
    for i in expect:
        assert f"sample {i} " in text
    st = open_store(out)
    s = st.samples
    assert s["done"].all()
    acts = st.activations(LAYERS[1])
    for i in range(9):
        if i in expect:
            assert expect[i] in s["error"][i], (i, s["error"][i])
            assert np.isnan(acts[i]).all()
        else:  # good ones, and the greyscale / CMYK / alpha PNG converted
            assert s["error"][i] == "" and np.isfinite(acts[i]).all()
    assert np.isnan(s["anchor_score"]).all()  # backbone-only: no detections
    # The converted images match the in-process forward of the same bytes.
    got = st.activations(LAYERS[0])[[4, 5, 6]]
    ref = reference_forward(df, [4, 5, 6])[LAYERS[0]]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_strict_stops_at_the_first_failure(ray_session, synthetic_coco, tmp_path):
    from fovea_ray.pipeline import extract

    df, _ = _salted(make_manifest(synthetic_coco, 8), synthetic_coco, tmp_path)
    df = df.iloc[:4].copy()  # one chunk of bad images: no forward pass needed to meet a failure
    out = tmp_path / "strict.zarr"
    with pytest.raises(InputError, match=r"(corrupt|truncated|empty|missing)\.jpg: .*--strict"):
        extract(df, out, **{**KW, "backbone_only": True, "strict": True})
    assert 0 in open_store(out).pending_chunks()  # the failing chunk is not marked done


@pytest.mark.slow
def test_killed_driver_then_rerun_gives_the_uninterrupted_store(ray_session, synthetic_coco, tmp_path):
    """SIGKILL the `fovea-ray extract` driver part-way; the rerun ends with the uninterrupted store."""
    import signal

    from fovea_ray.data.manifest import write_manifest
    from fovea_ray.pipeline import extract

    # The resume is under test, not the network: the two-layer user factory keeps it fast.
    net = "fovea_ray.model.examples:two_layer_cnn"
    kw = dict(model=net, layers=["act1", "act2"], stats=STATS, chunk_size=1, batch_size=1, seed=0, progress=False)
    manifest_path = write_manifest(make_manifest(synthetic_coco, 8), tmp_path / "m.parquet")
    ref = tmp_path / "ref.zarr"
    extract(manifest_path, ref, **kw)

    out = tmp_path / "killed.zarr"
    args = [
        str(manifest_path),
        "--out",
        str(out),
        "--address",
        ray_session.get_runtime_context().gcs_address,
        "--model",
        net,
        "--layers",
        "act1,act2",
        "--stats",
        ",".join(STATS),
        "--chunk-size",
        "1",
        "--batch-size",
        "1",
        "--seed",
        "0",
        "--no-progress",
    ]
    code, _ = signal_when(["extract", *args], chunks_done(out, 2), signal.SIGKILL, timeout=120)
    assert code == -signal.SIGKILL
    partial = open_store(out)
    left = partial.pending_chunks()
    assert 0 < len(left) < 8 and partial.attrs["status"] == "running"  # killed with no chance to clean up
    rerun = extract(manifest_path, out, **kw)
    assert rerun.complete and rerun.chunks_run == len(left) and rerun.chunks_skipped == 8 - len(left)
    assert_same_store(out, ref)


def test_cli_resumes_a_complete_store_and_reports(reference_store, manifest, tmp_path):
    from fovea_ray.data.manifest import write_manifest

    path = write_manifest(manifest, tmp_path / "m.parquet")
    out = tmp_path / "s.zarr"
    shutil.copytree(reference_store, out)
    code, text = run_cli(
        [
            "extract",
            str(path),
            "--out",
            str(out),
            "--arch",
            "resnet50",
            "--layers",
            ",".join(LAYERS),
            "--stats",
            "mean",
            "--stats",
            "max",
            "--chunk-size",
            "4",
            "--batch-size",
            "3",
            "--no-progress",
        ]
    )
    assert code == 0, text
    assert "complete" in text and "0 done" in text and "6 skipped" in text


def test_cli_bad_inputs_are_one_line_errors(ray_session, tmp_path):
    code, text = run_cli(["extract", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "s.zarr")])
    assert code == 2 and "nope.parquet" in text and "Traceback" not in text
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    code, text = run_cli(["extract", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "s.zarr")])
    assert code == 2 and "bad.parquet" in text and "Traceback" not in text
