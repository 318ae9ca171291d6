"""The pipeline's stages as plain functions (no Ray, no model): read, anchor score, sink, summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fovea_ray.pipeline.anchor import anchor_box_on_canvas, anchor_score
from fovea_ray.pipeline.extract import manifest_checksum
from fovea_ray.pipeline.read import fetch_bytes, read_chunk
from fovea_ray.pipeline.sink import ACT_PREFIX, write_chunks
from fovea_ray.pipeline.summary import ExtractSummary
from fovea_ray.store import create_store, open_store


def test_fetch_bytes_records_failures(tmp_path):
    import fsspec

    good = tmp_path / "a.jpg"
    good.write_bytes(b"\xff\xd8\xffdata")
    (tmp_path / "empty.jpg").write_bytes(b"")
    mem = fsspec.filesystem("memory")
    mem.pipe("/bucket/b.png", b"\x89PNGxyz")
    uris = [
        str(good),
        str(tmp_path / "missing.jpg"),
        str(tmp_path / "empty.jpg"),
        str(tmp_path),
        f"file://{good}",
        "memory://bucket/b.png",
        "memory://bucket/nope.png",
    ]
    blobs, errors = fetch_bytes(uris)
    assert blobs[0] == blobs[4] == b"\xff\xd8\xffdata" and errors[0] == errors[4] == ""
    assert blobs[5] == b"\x89PNGxyz" and errors[5] == ""
    assert errors[1].startswith("missing file") and errors[6].startswith("missing file")
    assert errors[2] == "empty file (0 bytes)"
    assert errors[3].startswith("not a file")
    assert blobs[1] == blobs[3] == blobs[6] == b""
    row = read_chunk({"image_uri": np.array([str(good)], dtype=object)})
    assert row["blobs"] == [b"\xff\xd8\xffdata"] and row["read_error"] == [""]


def _numpy_anchor_score(det: dict, anchor: np.ndarray, category_id: int) -> float:
    """The pipeline's former numpy IoU and matching rule: the oracle for the torchvision one."""
    boxes, labels, scores = (
        np.asarray(det[k].float() if k != "labels" else det[k]) for k in ("boxes", "labels", "scores")
    )
    boxes = boxes.astype(np.float64)
    same = labels == category_id
    if not same.any():
        return 0.0
    b = boxes[same]
    ix = np.clip(np.minimum(anchor[2], b[:, 2]) - np.maximum(anchor[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(anchor[3], b[:, 3]) - np.maximum(anchor[1], b[:, 1]), 0, None)
    inter = ix * iy
    union = (anchor[2] - anchor[0]) * (anchor[3] - anchor[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    hit = iou >= 0.5
    return float(scores[same][hit].max()) if hit.any() else 0.0


def test_anchor_score_equals_the_numpy_rule():
    """torchvision's box_iou gives the former numpy results, bit for bit, over random detections."""
    rng = np.random.default_rng(0)
    matched = 0
    for trial in range(300):
        d = int(rng.integers(0, 12))
        xy = rng.uniform(0, 100, (d, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 60, (d, 2))], axis=1)
        labels = rng.integers(1, 4, d)
        if d and trial % 2:
            labels[0] = 2  # odd trials: the anchor sits near a detection of its own category
        det = {
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.tensor(labels),
            "scores": torch.tensor(rng.uniform(0.05, 1, d), dtype=torch.float32),
        }
        anchor = boxes[0] + rng.normal(0, 5, 4) if d and trial % 2 else rng.uniform(0, 100, 4).cumsum()[[0, 1, 2, 3]]
        got = anchor_score(det, anchor, 2)
        assert got == _numpy_anchor_score(det, np.asarray(anchor, np.float64), 2), trial
        matched += got > 0
    assert matched > 30  # the comparison covers hits, not only misses


def test_anchor_score_rule():
    anchor = np.array([10.0, 10.0, 50.0, 50.0])
    det = {
        "boxes": torch.tensor(
            [[10.0, 10.0, 50.0, 50.0], [12.0, 12.0, 52.0, 52.0], [100, 100, 140, 140.0], [10.0, 10.0, 50.0, 50.0]]
        ),
        "labels": torch.tensor([3, 3, 3, 7]),
        "scores": torch.tensor([0.4, 0.9, 0.99, 0.95]),
    }
    assert anchor_score(det, anchor, 3) == pytest.approx(0.9)  # best same-category match with IoU >= 0.5
    assert anchor_score(det, anchor, 7) == pytest.approx(0.95)
    assert anchor_score(det, anchor, 5) == 0.0  # category never detected
    far = np.array([200.0, 200.0, 220.0, 220.0])
    assert anchor_score(det, far, 3) == 0.0  # detected, but elsewhere
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    assert anchor_score(empty, anchor, 3) == 0.0


def test_anchor_box_follows_the_render():
    """The anchor box on the canvas is where render_batch pastes the object's pixels."""
    from fovea_ray.data.render import render_batch

    class Identity:  # no blur: isolates the crop-and-paste geometry
        def __call__(self, images, fixations):
            return images

        def params(self):
            return {"pixels_per_degree": 30.0, "e2": 2.3, "ct0": 1 / 64, "alpha": 0.106, "levels": 1}

    img = torch.zeros(3, 120, 160)
    bbox = (37.0, 21.0, 30.0, 18.0)  # x, y, w, h
    img[:, 21:39, 37:67] = 1.0
    for window, canvas in [
        ((20, 5, 81, 61), (96, 128)),
        ((-30, -20, 100, 90), (128, 128)),
        ((10, 0, 64, 64), (65, 80)),
    ]:
        out = render_batch([img], [[50.0, 30.0]], [window], canvas, Identity(), margin=None)[0]
        x0, y0, x1, y1 = anchor_box_on_canvas(bbox, window, canvas).astype(int)
        assert torch.all(out[:, y0:y1, x0:x1] == 1.0)
        assert int((out == 1.0).sum()) == 3 * 30 * 18  # nothing else is white


def _manifest(n=6):
    return pd.DataFrame(
        {
            "sample": np.arange(n),
            "image_id": np.arange(n) + 100,
            "file_name": [f"{i}.jpg" for i in range(n)],
            "image_uri": [f"/x/{i}.jpg" for i in range(n)],
            "image_width": [64] * n,
            "image_height": [48] * n,
            "ann_id": np.arange(n) + 7,
            "category_id": [1] * n,
            "bbox": [[1.0, 2.0, 3.0, 4.0]] * n,
            "label": [0, 1] * (n // 2),
            "fixation_xy": [[5.0, 6.0]] * n,
            "eccentricity_deg": [1.0] * n,
            "window_xywh": [[0, 0, 32, 32]] * n,
            "canvas": [[32, 32]] * n,
            "pixels_per_degree": [30.0] * n,
        }
    )


def test_manifest_checksum_identifies_the_samples():
    a = _manifest()
    assert manifest_checksum(a) == manifest_checksum(a.copy())
    moved = a.assign(image_uri=[f"s3://bucket/{i}.jpg" for i in range(6)])
    assert manifest_checksum(moved) == manifest_checksum(a)  # images moved to object storage: same experiment
    b = a.copy()
    b.at[3, "fixation_xy"] = [5.0, 6.5]
    assert manifest_checksum(b) != manifest_checksum(a)
    assert manifest_checksum(a.assign(label=[1, 0] * 3)) != manifest_checksum(a)


def _model_rows(store, chunk, errors, k):
    a, b = store.plan.bounds(chunk)
    n = b - a
    acts = np.full((1, k, 2, 1), np.nan, np.float32)
    acts[0, :n] = np.arange(n * 2, dtype=np.float32).reshape(n, 2, 1) + a
    return {
        "chunk": np.array([chunk]),
        "n": np.array([n]),
        ACT_PREFIX + "l": acts,
        "controls": np.zeros((1, k, 3, 1), np.float32),
        "anchor_score": np.ones((1, k), np.float32),
        "errors": np.array([json.dumps(errors)]),
        "weights_checksum": np.array(["abc"]),
        "seconds": np.array([0.1]),
    }


def test_sink_writes_whole_chunks_and_strict_skips(tmp_path):
    st = create_store(
        tmp_path / "s.zarr",
        n_samples=5,
        layers={"l": (2, ["mean"])},
        control_stats=["mean"],
        chunk_size=4,
        samples=_manifest(6).iloc[:5],
        attrs={},
    )
    out = write_chunks(_model_rows(st, 1, ["bad file"], 4), store_path=st.path)  # short last chunk, padded to K
    assert out["written"].tolist() == [True] and json.loads(out["failures"][0]) == [[4, "bad file"]]
    s = open_store(st.path)
    assert s.pending_chunks() == [0]
    assert s.samples["error"].tolist() == ["", "", "", "", "bad file"]
    out = write_chunks(_model_rows(st, 0, ["", "x", "", ""], 4), store_path=st.path, strict=True)
    assert out["written"].tolist() == [False] and out["n_failed"].tolist() == [1]
    assert open_store(st.path).pending_chunks() == [0]  # strict: nothing written for that chunk
    write_chunks(_model_rows(st, 0, [""] * 4, 4), store_path=st.path, strict=True)
    s = open_store(st.path)
    assert s.pending_chunks() == []
    np.testing.assert_array_equal(
        s.activations("l")[:, :, 0], np.array([[0, 1], [2, 3], [4, 5], [6, 7], [4, 5]], float)
    )


def test_summary_lists_failures():
    s = ExtractSummary(
        store="s.zarr",
        n_samples=10,
        n_chunks=3,
        done=8,
        skipped=2,
        failed=2,
        failures=[(3, "a.jpg", "empty file (0 bytes)"), (5, "b.jpg", "missing file (not found)")],
        seconds=4.0,
        complete=True,
        device="CPU",
        actors=1,
    )
    text = s.format()
    assert "8 done (6 good, 2 failed), 2 skipped" in text and "2.00 images/s" in text
    assert "sample 3 a.jpg: empty file (0 bytes)" in text and "sample 5 b.jpg: missing file" in text
    assert json.loads(json.dumps(s.to_dict()))["images_per_s"] == 2.0


def test_chunk_extractor_without_ray(synthetic_coco):
    """The model stage as a plain object: good samples tapped, bad ones NaN with a reason."""
    from fovea_ray.foveation import Foveator
    from fovea_ray.pipeline.actor import ChunkExtractor, ModelSpec

    layers = ("backbone.body.layer1.0.bn3",)
    spec = ModelSpec(
        arch="resnet50",
        weights=None,
        canvas=(96, 96),
        seed=0,
        layers=layers,
        channels=(256,),
        stats=("mean", "max"),
        backbone_only=True,
        foveation=Foveator(pixels_per_degree=16.0).params(),
        device="cpu",
        precision="auto",
        batch_size=2,
        torch_threads=1,
    )
    ex = ChunkExtractor(spec)
    assert ex.precision == "fp32" and ex.control_stats[-1] == "hf_energy"
    good = sorted((synthetic_coco / "images").iterdir())[0].read_bytes()
    blobs = [good, b"", b"garbage", good]
    fix = np.array([[100.0, 100.0]] * 4)
    win = np.array([[52, 52, 96, 96]] * 4)
    res = ex.process(blobs, ["", "empty file (0 bytes)", "", ""], fix, win, np.zeros((4, 4)), [1, 1, 1, 1])
    assert res.errors[0] == "" and res.errors[3] == "" and res.errors[1] == "empty file (0 bytes)"
    assert "cannot decode" in res.errors[2]
    a = res.activations[layers[0]]
    assert a.shape == (4, 256, 2) and np.isfinite(a[[0, 3]]).all() and np.isnan(a[[1, 2]]).all()
    np.testing.assert_allclose(a[0], a[3], rtol=1e-6, atol=1e-6)  # same input, same taps
    assert np.isnan(res.anchor_score).all()  # backbone-only: no detections
    assert res.controls.shape == (4, 3, 3) and np.isfinite(res.controls[[0, 3]]).all()
    # A chunk where everything failed still has the store's shapes.
    res = ex.process([b"", b""], ["missing file (not found)"] * 2, fix[:2], win[:2], np.zeros((2, 4)), [1, 1])
    assert res.activations[layers[0]].shape == (2, 256, 2) and np.isnan(res.activations[layers[0]]).all()


def test_sustained_rate_ignores_start_up_and_one_late_chunk():
    from fovea_ray.pipeline.extract import sustained_rate

    # 10 chunks of 4 samples at 2 samples/s after a 20 s start-up; chunk 5 stored 1 s late.
    t = [20.0 + 2.0 * i for i in range(10)]
    t[5] += 1.0
    arrivals = [(ti, 4 * (i + 1)) for i, ti in enumerate(t)]
    assert sustained_rate(arrivals) == pytest.approx(2.0, rel=0.05)
    assert sustained_rate(arrivals[:4]) == 0.0  # too few chunks to tell: not measured
    assert sustained_rate(arrivals[:1]) == 0.0


def test_probe_resolves_patterns_once_into_frozen_facts():
    """The probe turns patterns into names; the actors take only names."""
    import dataclasses

    from fovea_ray.pipeline.actor import ChunkExtractor, ModelSpec
    from fovea_ray.pipeline.probe import probe_model

    facts = probe_model("resnet50", None, (64, 64), 0, ["backbone.body.layer1.*"], ["mean"], True, 16.0)
    assert facts.layers == tuple(f"backbone.body.layer1.{i}" for i in range(3)) and facts.channels == (256,) * 3
    assert facts.stats == ("mean",) and len(facts.weights_checksum) == 64
    assert facts.store_layers()["backbone.body.layer1.2"] == (256, ["mean"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.layers = ()
    spec = ModelSpec.from_facts(facts, arch="resnet50", weights=None, canvas=(64, 64), seed=0, backbone_only=True)
    assert spec.layers == facts.layers and spec.weights_checksum == facts.weights_checksum
    with pytest.raises(ValueError, match="resolved module names"):
        ChunkExtractor(dataclasses.replace(spec, layers=("backbone.body.layer1.*",)))
