"""The manifest rules on the synthetic set and on coco128: independence, balance, eligibility,
geometry, optimality, determinism; and the library's errors for bad input."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from _helpers import blossom_total

from fovea_ray.data.manifest import MANIFEST_COLUMNS, build_manifest, read_manifest, summary_path, write_manifest
from fovea_ray.errors import InputError

SYN_CANVAS = 256
COCO128_ANN = "annotations/instances_train2017.json"


def eligible_from_raw_json(ann_file: Path, canvas: int, min_area=1024.0, frac=0.25, border=1.0) -> dict:
    """An independent reading of the anchor rules: image id -> {category id: {ann ids}}."""
    data = json.loads(Path(ann_file).read_text())
    imgs = {im["id"]: im for im in data["images"]}
    out: dict = {}
    for a in data["annotations"]:
        im = imgs[a["image_id"]]
        x, y, w, h = a["bbox"]
        if (
            a.get("iscrowd", 0) == 0
            and a["area"] >= min_area
            and x >= border
            and y >= border
            and x + w <= im["width"] - border
            and y + h <= im["height"] - border
            and w * h <= frac * canvas * canvas
            and w <= canvas
            and h <= canvas
        ):
            out.setdefault(a["image_id"], {}).setdefault(a["category_id"], set()).add(a["id"])
    return out


def check_rules(df, ann_file: Path, canvas: int, band=(8.0, 12.0), ppd=30.0) -> None:
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert np.array_equal(df["sample"].to_numpy(), np.arange(len(df)))
    # Independence: every sample is a different image (so no image serves both types).
    assert df["image_id"].is_unique
    # Balance: per category, as many type 1 as type 0.
    counts = Counter(zip(df["category_id"], df["label"]))
    for cat in df["category_id"].unique():
        assert counts[(cat, 1)] == counts[(cat, 0)] > 0
    # Eligibility, from an independent reading of the JSON.
    eligible = eligible_from_raw_json(ann_file, canvas)
    for r in df.itertuples():
        assert r.ann_id in eligible[r.image_id][r.category_id]
    # Geometry.
    for r in df.itertuples():
        x, y, w, h = r.bbox
        cx, cy = x + w / 2, y + h / 2
        fx, fy = r.fixation_xy
        ecc = np.hypot(fx - cx, fy - cy) / ppd
        assert r.eccentricity_deg == pytest.approx(ecc, abs=1e-9)
        if r.label == 1:
            assert x <= fx <= x + w and y <= fy <= y + h  # the fixation lies on the object
            assert ecc == pytest.approx(0.0, abs=1e-9)
        else:
            assert band[0] - 1e-9 <= ecc <= band[1] + 1e-9  # the object centre is in the band
        wx, wy, ww, wh = r.window_xywh
        assert (ww, wh) == (canvas, canvas) and list(r.canvas) == [canvas, canvas]
        assert abs(wx + ww / 2 - cx) <= 0.5 and abs(wy + wh / 2 - cy) <= 0.5  # centred on the object
        assert r.pixels_per_degree == ppd
    # Type-0 directions are spread around the circle, not one-sided.
    t0 = df[df["label"] == 0]
    ang = [
        np.arctan2(f[1] - (b[1] + b[3] / 2), f[0] - (b[0] + b[2] / 2)) for f, b in zip(t0["fixation_xy"], t0["bbox"])
    ]
    assert np.abs(np.mean(np.exp(1j * np.array(ang)))) < 0.5


@pytest.fixture(scope="module")
def syn_manifest(synthetic_coco):
    return build_manifest(synthetic_coco / "instances.json", synthetic_coco / "images", canvas=SYN_CANVAS, seed=0)


def test_synthetic_rules(syn_manifest, synthetic_coco):
    df = syn_manifest
    check_rules(df, synthetic_coco / "instances.json", SYN_CANVAS)
    s = df.attrs["summary"]
    assert s["total"] == len(df) >= 50  # nearly every synthetic image gives a sample
    assert s["per_type"]["1"] == s["per_type"]["0"] == len(df) // 2
    assert s["n_categories"] >= 6
    # Optimal: equal to the maximum matching of the "shares a category" graph.
    eligible = {i: sorted(c) for i, c in eligible_from_raw_json(synthetic_coco / "instances.json", SYN_CANVAS).items()}
    assert len(df) == s["optimum_total"] == blossom_total(eligible)
    assert all(Path(u).is_file() for u in df["image_uri"])


def test_coco128_rules_and_optimum(coco128_dir):
    ann = coco128_dir / COCO128_ANN
    df = build_manifest(ann, coco128_dir / "train2017", canvas=640, seed=0)
    check_rules(df, ann, 640)
    s = df.attrs["summary"]
    eligible = {i: sorted(c) for i, c in eligible_from_raw_json(ann, 640).items()}
    assert len(df) == s["optimum_total"] == blossom_total(eligible)
    assert s["first_come_total"] < s["optimum_total"]
    assert s["annotations"]["rejected"]["crowd"] > 0 and s["annotations"]["rejected"]["too_small"] > 0


def test_determinism_is_byte_identical(synthetic_coco, tmp_path):
    kw = dict(canvas=SYN_CANVAS, seed=5, n_per_type=12)
    a = write_manifest(
        build_manifest(synthetic_coco / "instances.json", synthetic_coco / "images", **kw), tmp_path / "a.parquet"
    )
    b = write_manifest(
        build_manifest(synthetic_coco / "instances.json", synthetic_coco / "images", **kw), tmp_path / "b.parquet"
    )
    assert a.read_bytes() == b.read_bytes()
    c = write_manifest(
        build_manifest(synthetic_coco / "instances.json", synthetic_coco / "images", **{**kw, "seed": 6}),
        tmp_path / "c.parquet",
    )
    assert a.read_bytes() != c.read_bytes()
    summary = json.loads(summary_path(a).read_text())
    assert summary["total"] == 24 and summary["per_type"] == {"1": 12, "0": 12}
    back = read_manifest(a)
    assert back.attrs["config"]["seed"] == 5 and back.attrs["config"]["canvas"] == [SYN_CANVAS, SYN_CANVAS]
    assert len(back) == 24 and back["label"].dtype == np.int8
    assert [list(v) for v in back["window_xywh"]] == [list(v) for v in read_manifest(b)["window_xywh"]]


def test_cap_categories_band_and_ppd(synthetic_coco):
    ann, images = synthetic_coco / "instances.json", synthetic_coco / "images"
    df = build_manifest(ann, images, canvas=SYN_CANVAS, n_per_type=9, seed=1)
    per_cat = Counter(df.loc[df["label"] == 1, "category_id"])
    assert sum(per_cat.values()) == 9 and max(per_cat.values()) - min(per_cat.values()) <= 1  # spread fairly
    only = build_manifest(
        ann, images, canvas=SYN_CANVAS, categories=["disc", "5"], ecc_band=(4.0, 6.0), pixels_per_degree=40.0
    )
    assert set(only["category_id"]) == {1, 5}
    check_rules(only, ann, SYN_CANVAS, band=(4.0, 6.0), ppd=40.0)


def test_a_band_that_would_not_blur_type_0_is_refused(synthetic_coco):
    """At 16 px/deg the display's Nyquist is 8 cycles/deg; Geisler-Perry's cutoff at 4.5 deg
    is 13.3 cycles/deg, so 'type 0' objects there would be as sharp as type 1."""
    from fovea_ray.foveation.model import cutoff_cpd

    assert cutoff_cpd(4.5) > 16.0 / 2
    with pytest.raises(InputError, match="unblurred.*above 9.0 deg"):
        build_manifest(
            synthetic_coco / "instances.json", synthetic_coco / "images", ecc_band=(4.5, 6.0), pixels_per_degree=16.0
        )


def test_missing_images_are_counted_and_excluded(synthetic_coco, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(synthetic_coco / "images", images)
    gone = sorted(images.iterdir())[:3]
    for p in gone:
        p.unlink()
    df = build_manifest(synthetic_coco / "instances.json", images, canvas=SYN_CANVAS)
    miss = df.attrs["summary"]["images_missing"]
    assert miss["count"] == 3 and miss["first"] == [p.name for p in gone]
    assert not set(df["file_name"]) & {p.name for p in gone}


def _write(tmp_path: Path, data, name="bad.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_bad_inputs_give_one_clear_error(synthetic_coco, tmp_path):
    good = json.loads((synthetic_coco / "instances.json").read_text())
    images = synthetic_coco / "images"
    cases = {
        "not valid JSON": "{not json",
        "annotation file is empty": "",
        "missing the top-level key 'annotations'": {k: v for k, v in good.items() if k != "annotations"},
        "has no 'bbox'": {**good, "annotations": [{k: v for k, v in good["annotations"][0].items() if k != "bbox"}]},
        "refer to unknown image ids": {**good, "annotations": [{**good["annotations"][0], "image_id": 10**9}]},
        "refer to unknown category ids": {**good, "annotations": [{**good["annotations"][0], "category_id": 999}]},
        "duplicate image ids": {**good, "images": good["images"] + good["images"][:1]},
        "invalid 'width'": {**good, "images": [{**good["images"][0], "width": -3}] + good["images"][1:]},
        "expected a JSON object": "[1, 2]",
    }
    for why, data in cases.items():
        path = _write(tmp_path, data)
        with pytest.raises(InputError) as err:
            build_manifest(path, images, canvas=SYN_CANVAS)
        msg = str(err.value)
        assert why in msg and str(path) in msg and "\n" not in msg, msg
    with pytest.raises(InputError, match="annotation file not found"):
        build_manifest(tmp_path / "nope.json", images)
    with pytest.raises(InputError, match="image root does not exist"):
        build_manifest(synthetic_coco / "instances.json", tmp_path / "no-such-dir")
    with pytest.raises(InputError, match="unknown categories zebra"):
        build_manifest(synthetic_coco / "instances.json", images, categories=["zebra"])
    with pytest.raises(InputError, match="no balanced sample"):
        build_manifest(synthetic_coco / "instances.json", images, canvas=SYN_CANVAS, min_area=10**6)
    with pytest.raises(InputError, match="ecc_band"):
        build_manifest(synthetic_coco / "instances.json", images, ecc_band=(5.0, 2.0))
    not_parquet = _write(tmp_path, "hello", "m.parquet")
    with pytest.raises(InputError, match="not a readable parquet manifest"):
        read_manifest(not_parquet)
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "none.parquet")


def test_fsspec_image_root(synthetic_coco):
    """A non-local fsspec image root (an in-memory filesystem): listing, missing files, URIs."""
    import fsspec

    fs = fsspec.filesystem("memory")
    names = sorted(p.name for p in (synthetic_coco / "images").iterdir())
    for name in names[:-2]:  # the last two are "missing"
        fs.pipe(f"/fovea-test/images/{name}", (synthetic_coco / "images" / name).read_bytes())
    try:
        df = build_manifest(synthetic_coco / "instances.json", "memory://fovea-test/images", canvas=SYN_CANVAS)
        assert df.attrs["summary"]["images_missing"] == {"count": 2, "first": names[-2:]}
        assert all(u.startswith("memory://") for u in df["image_uri"])
        with fsspec.open(df["image_uri"].iloc[0], "rb") as fh:
            assert fh.read(3) == b"\xff\xd8\xff"
        with pytest.raises(InputError, match="image root does not exist"):
            build_manifest(synthetic_coco / "instances.json", "memory://fovea-test/nothing-here")
    finally:
        fs.rm("/fovea-test", recursive=True)
