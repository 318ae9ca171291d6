"""The synthetic mini-COCO: valid COCO that pycocotools loads, seeded, textured, fast."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from fovea_ray.data.synthetic import CATEGORIES, make_synthetic_coco


def test_pycocotools_loads_it_and_masks_match_areas(synthetic_coco):
    from pycocotools.coco import COCO

    coco = COCO(str(synthetic_coco / "instances.json"))
    assert len(coco.imgs) == 60
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {name for _, name, _ in CATEGORIES}
    for img in coco.imgs.values():
        assert (synthetic_coco / "images" / img["file_name"]).is_file()
        assert coco.getAnnIds(imgIds=img["id"]), "every image holds at least one object"
    for ann in coco.anns.values():
        img = coco.imgs[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert ann["iscrowd"] == 0
        assert 0 <= x and 0 <= y and x + w <= img["width"] and y + h <= img["height"]
        mask = coco.annToMask(ann)
        # The polygon's rasterised area agrees with the stored area (rings are keyholes).
        assert mask.sum() == pytest.approx(ann["area"], rel=0.03)
        ys, xs = np.nonzero(mask)
        assert xs.min() >= np.floor(x) - 1 and xs.max() <= np.ceil(x + w) + 1
        assert ys.min() >= np.floor(y) - 1 and ys.max() <= np.ceil(y + h) + 1


def test_objects_are_textured_so_blur_changes_them(synthetic_coco):
    from pycocotools.coco import COCO

    coco = COCO(str(synthetic_coco / "instances.json"))
    energies = []
    for ann in list(coco.anns.values())[:20]:
        img = coco.imgs[ann["image_id"]]
        pix = np.asarray(Image.open(synthetic_coco / "images" / img["file_name"]).convert("L"), np.float32) / 255
        mask = coco.annToMask(ann).astype(bool)
        # Local contrast inside the object: mean absolute horizontal + vertical differences.
        gx = np.abs(np.diff(pix, axis=1))[mask[:, 1:] & mask[:, :-1]]
        gy = np.abs(np.diff(pix, axis=0))[mask[1:, :] & mask[:-1, :]]
        energies.append(np.concatenate([gx, gy]).mean())
    assert np.median(energies) > 0.05, energies


def test_seeded_and_deterministic(tmp_path):
    a = make_synthetic_coco(tmp_path / "a", n_images=4, seed=3, image_size=96)
    b = make_synthetic_coco(tmp_path / "b", n_images=6, seed=3, image_size=96)
    c = make_synthetic_coco(tmp_path / "c", n_images=4, seed=4, image_size=96)
    for i in range(4):
        name = f"{i:06d}.jpg"
        # Image i does not depend on n_images; another seed gives another image.
        assert (a / "images" / name).read_bytes() == (b / "images" / name).read_bytes()
    assert (a / "images" / "000000.jpg").read_bytes() != (c / "images" / "000000.jpg").read_bytes()
    ja, jb = json.loads((a / "instances.json").read_text()), json.loads((b / "instances.json").read_text())
    assert ja["annotations"] == [x for x in jb["annotations"] if x["image_id"] <= 4]


def test_rectangular_images_and_bad_arguments(tmp_path):
    root = make_synthetic_coco(tmp_path / "r", n_images=2, seed=0, image_size=(120, 200))
    data = json.loads((root / "instances.json").read_text())
    assert all((im["height"], im["width"]) == (120, 200) for im in data["images"])
    assert Image.open(root / "images" / "000000.jpg").size == (200, 120)
    with pytest.raises(ValueError, match="n_images"):
        make_synthetic_coco(tmp_path / "x", n_images=0, seed=0)
    with pytest.raises(ValueError, match="object_size"):
        make_synthetic_coco(tmp_path / "x", n_images=1, seed=0, object_size=(0.5, 0.2))


def test_fast_enough(tmp_path):
    t0 = time.perf_counter()
    make_synthetic_coco(tmp_path / "f", n_images=40, seed=1)
    # 200 images in a few seconds: 40 must take well under 5 s even on a busy 2-core box.
    assert time.perf_counter() - t0 < 5.0
