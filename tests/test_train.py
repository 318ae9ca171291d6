"""Training parts without Ray: COCO targets, label map, sampler, schedule, fixations, the
foveated training step, frozen-BN calibration, COCOeval wiring, checkpoints, config."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fovea_ray.errors import InputError
from fovea_ray.train.config import TrainConfig

# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory) -> Path:
    """Six 128-px synthetic images (each with 1-3 textured objects)."""
    from fovea_ray.data.synthetic import make_synthetic_coco

    return make_synthetic_coco(tmp_path_factory.mktemp("tiny_coco"), n_images=6, seed=3, image_size=128)


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        ann_file=str(root / "instances.json"),
        images=str(root / "images"),
        out=str(out),
        arch="resnet50",
        steps=10,
        batch_size=2,
        trainable_layers=0,
        rpn_pre_nms_top_n=200,
        rpn_post_nms_top_n=64,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=16,
        hflip=0.0,
        pixels_per_degree=60.0,
        lr=0.01,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def r50(tiny_coco, tmp_path_factory):
    """A random R50 Mask R-CNN as training builds it (91 classes), shared by several tests."""
    from fovea_ray.train.loop import build_training_model

    return build_training_model(_cfg(tiny_coco, tmp_path_factory.mktemp("o")), 91)


def _raw_batch(root: Path, n: int = 2):
    from fovea_ray.train.dataset import CocoInstances, LabelMap, collate, load_coco

    coco = load_coco(root / "instances.json")
    ds = CocoInstances(coco, root / "images", LabelMap.for_categories(coco.getCatIds()))
    return collate([ds[i] for i in range(n)])


class _Captured(Exception):
    """Raised by a hook to stop the step once the model's input is seen."""


def _model_input(runner, step: int, images, targets) -> list[torch.Tensor]:
    """What ``runner.step`` feeds the model: a pre-hook records it and stops the step."""
    seen: list[list[torch.Tensor]] = []

    def hook(module, args):
        seen.append([im.detach().clone() for im in args[0]])
        raise _Captured

    handle = runner.model.register_forward_pre_hook(hook)
    try:
        with pytest.raises(_Captured):
            runner.step(step, images, targets)
    finally:
        handle.remove()
    return seen[0]


# ---------------------------------------------------------------- data


def _write_coco(tmp_path: Path) -> tuple[Path, dict[int, np.ndarray]]:
    """A 30x40 image with a polygon, a compressed RLE, an uncompressed RLE, a crowd and a
    degenerate annotation; returns (ann file, expected masks by annotation id)."""
    import pycocotools.mask as mask_utils
    from PIL import Image

    h, w = 30, 40
    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(tmp_path / "img" / "a.png")
    rle_mask = np.zeros((h, w), np.uint8)
    rle_mask[3:9, 20:35] = 1
    rle_mask[5, 21] = 0  # a hole: the mask is not just its box
    compressed = mask_utils.encode(np.asfortranarray(rle_mask))
    raw_mask = np.zeros((h, w), np.uint8)
    raw_mask[15:27, 2:9] = 1
    # Uncompressed RLE written independently: column-major runs, starting with zeros.
    flat = raw_mask.flatten(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    anns = [
        {
            "id": 1,
            "image_id": 7,
            "category_id": 3,
            "bbox": [10, 12, 10, 10],
            "area": 100,
            "iscrowd": 0,
            "segmentation": [[10, 12, 20, 12, 20, 22, 10, 22]],
        },
        {
            "id": 2,
            "image_id": 7,
            "category_id": 5,
            "bbox": [20, 3, 15, 6],
            "area": float(rle_mask.sum()),
            "iscrowd": 0,
            "segmentation": {"size": [h, w], "counts": compressed["counts"].decode("ascii")},
        },
        {
            "id": 3,
            "image_id": 7,
            "category_id": 3,
            "bbox": [2, 15, 7, 12],
            "area": float(raw_mask.sum()),
            "iscrowd": 0,
            "segmentation": {"size": [h, w], "counts": runs},
        },
        {
            "id": 4,
            "image_id": 7,
            "category_id": 5,
            "bbox": [0, 0, 40, 30],
            "area": 1200,
            "iscrowd": 1,
            "segmentation": {"size": [h, w], "counts": [0, 1200]},
        },
        {
            "id": 5,
            "image_id": 7,
            "category_id": 5,
            "bbox": [30, 20, 0.5, 4],
            "area": 2,
            "iscrowd": 0,
            "segmentation": [[30, 20, 30.5, 20, 30.5, 24, 30, 24]],
        },
    ]
    data = {
        "images": [{"id": 7, "file_name": "a.png", "height": h, "width": w}],
        "annotations": anns,
        "categories": [{"id": 3, "name": "c3"}, {"id": 5, "name": "c5"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    poly = np.zeros((h, w), np.uint8)
    poly[12:22, 10:20] = 1
    return tmp_path / "ann.json", {1: poly, 2: rle_mask, 3: raw_mask}


def test_targets_from_polygons_and_both_rle_kinds(tmp_path):
    from fovea_ray.train.dataset import CocoInstances, LabelMap, load_coco

    ann, want = _write_coco(tmp_path)
    coco = load_coco(ann)
    ds = CocoInstances(coco, tmp_path / "img", LabelMap.for_categories(coco.getCatIds()))
    image, target = ds[0]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 30, 40)
    assert target["ann_ids"].tolist() == [1, 2, 3]  # crowd and degenerate objects left out
    assert target["labels"].tolist() == [3, 5, 3]  # COCO ids are the labels (91 classes)
    np.testing.assert_allclose(target["boxes"][0].numpy(), [10, 12, 20, 22])
    np.testing.assert_allclose(target["boxes"][1].numpy(), [20, 3, 35, 9])
    masks = target["masks"].numpy()
    np.testing.assert_array_equal(masks[1], want[2])  # compressed RLE: exact
    np.testing.assert_array_equal(masks[2], want[3])  # uncompressed RLE: exact
    inter = (masks[0] & want[1]).sum()
    union = (masks[0] | want[1]).sum()
    assert inter / union > 0.8  # polygon rasterisation differs from a box only on the border


def test_unreadable_image_is_skipped_not_fatal(tmp_path):
    from fovea_ray.train.dataset import CocoInstances, LabelMap, load_coco

    ann, _ = _write_coco(tmp_path)
    data = json.loads(ann.read_text())
    data["images"].append({"id": 8, "file_name": "broken.jpg", "height": 30, "width": 40})
    data["annotations"].append({**data["annotations"][0], "id": 9, "image_id": 8})
    ann.write_text(json.dumps(data))
    (tmp_path / "img" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    coco = load_coco(ann)
    ds = CocoInstances(coco, tmp_path / "img", LabelMap.for_categories(coco.getCatIds()))
    assert len(ds) == 2
    _, target = ds[1]  # broken.jpg -> replaced by the next readable image
    assert int(target["image_id"]) == 7 and "broken.jpg" in ds.errors[0]


def test_bad_annotation_file_is_one_line_input_error(tmp_path):
    from fovea_ray.train.dataset import load_coco

    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(InputError, match="x.json"):
        load_coco(tmp_path / "x.json")
    with pytest.raises(InputError, match="not found"):
        load_coco(tmp_path / "missing.json")


def test_label_map_identity_contiguous_and_too_many():
    from fovea_ray.train.dataset import LabelMap

    ident = LabelMap.for_categories([1, 5, 90])
    assert ident.num_classes == 91 and ident.labels()[90] == 90
    cont = LabelMap.for_categories([7, 300, 1000])
    assert cont.category_ids == (0, 7, 300, 1000) and cont.labels() == {7: 1, 300: 2, 1000: 3}
    padded = LabelMap.for_categories([200, 100], num_classes=5)
    assert padded.category_ids == (0, 100, 200, 0, 0)
    with pytest.raises(InputError):
        LabelMap.for_categories(list(range(100, 110)), num_classes=5)


def test_step_sampler_resume_and_ranks():
    from fovea_ray.train.dataset import StepSampler

    full = list(StepSampler(7, batch_size=3, seed=4, steps=10))
    for start in (1, 2, 5, 9):
        assert list(StepSampler(7, batch_size=3, seed=4, start_step=start, steps=10)) == full[start * 3 :]
    # Two ranks: each epoch is split into disjoint halves covering every index.
    r0 = list(StepSampler(8, batch_size=2, rank=0, world_size=2, seed=1, steps=2))
    r1 = list(StepSampler(8, batch_size=2, rank=1, world_size=2, seed=1, steps=2))
    assert sorted(r0 + r1) == list(range(8))


# ---------------------------------------------------------------- schedule, fixations


def test_learning_rate_schedule():
    from fovea_ray.train.schedule import learning_rate

    kw = dict(base_lr=0.1, steps=90, warmup_steps=10, warmup_factor=0.001)
    assert learning_rate(0, **kw) == pytest.approx(1e-4)
    assert learning_rate(5, **kw) == pytest.approx(0.1 * (0.001 * 0.5 + 0.5))
    assert learning_rate(10, **kw) == pytest.approx(0.1)
    assert learning_rate(59, **kw) == pytest.approx(0.1)
    assert learning_rate(60, **kw) == pytest.approx(0.01)  # 2/3 of 90
    assert learning_rate(80, **kw) == pytest.approx(0.001)  # 8/9 of 90
    cos = dict(base_lr=0.1, steps=100, schedule="cosine")
    assert learning_rate(0, **cos) == pytest.approx(0.1)
    assert learning_rate(50, **cos) == pytest.approx(0.05)
    assert learning_rate(100, **cos) == pytest.approx(0.0, abs=1e-12)


def test_fixation_policies():
    from fovea_ray.train.fixation import draw_fixations, eval_fixations

    sizes = [(100, 60), (31, 41)]
    np.testing.assert_allclose(draw_fixations("center", sizes).numpy(), [[29.5, 49.5], [20.0, 15.0]])
    assert draw_fixations("none", sizes) is None
    u = draw_fixations("uniform", sizes * 500, torch.Generator().manual_seed(0))
    w, h = u[0::2, 0], u[0::2, 1]
    assert w.min() >= -0.5 and w.max() < 59.5 and h.min() >= -0.5 and h.max() < 99.5
    assert abs(w.mean().item() - 29.5) < 3 and abs(h.mean().item() - 49.5) < 5
    a = eval_fixations("uniform", sizes, [11, 12], seed=0)
    b = eval_fixations("uniform", list(reversed(sizes)), [12, 11], seed=0)
    assert torch.equal(a, b.flip(0))  # fixed per image id, whatever the batch
    with pytest.raises(ValueError):
        draw_fixations("random", sizes)


def test_foveate_images_groups_sizes_like_per_image_calls():
    from fovea_ray.foveation import Foveator
    from fovea_ray.train.fixation import foveate_images

    fov = Foveator(pixels_per_degree=60.0)
    g = torch.Generator().manual_seed(0)
    images = [
        torch.rand(3, 48, 64, generator=g),
        torch.rand(3, 40, 40, generator=g),
        torch.rand(3, 48, 64, generator=g),
    ]
    fix = torch.tensor([[5.0, 5.0], [20.0, 20.0], [60.0, 40.0]])
    out = foveate_images(fov, images, fix)
    for im, f, o in zip(images, fix, out):
        torch.testing.assert_close(o, fov(im[None], f[None])[0], rtol=0, atol=1e-6)
    assert foveate_images(fov, images, None) == images


# ---------------------------------------------------------------- the training step


def test_foveation_is_applied_inside_the_training_step(r50, tiny_coco, tmp_path):
    """The batch entering the model equals the Foveator's output at the policy's fixations:
    unchanged at the fixation, blurred in the periphery; unchanged everywhere for "none"."""
    from fovea_ray.foveation import Foveator
    from fovea_ray.train.loop import StepRunner

    images, targets = _raw_batch(tiny_coco)
    raw = [im.float() / 255 for im in images]
    fov = Foveator(pixels_per_degree=60.0)

    runner = StepRunner(r50, _cfg(tiny_coco, tmp_path), fov, torch.device("cpu"))
    seen = _model_input(runner, 0, images, targets)
    h, w = raw[0].shape[-2:]
    cx, cy = (w - 1) // 2, (h - 1) // 2
    for got, ref in zip(seen, raw):
        expected = fov(ref[None], torch.tensor([[(w - 1) / 2, (h - 1) / 2]]))[0]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert torch.equal(got[:, cy - 3 : cy + 4, cx - 3 : cx + 4], ref[:, cy - 3 : cy + 4, cx - 3 : cx + 4])
        corner = (got[:, :24, :24] - ref[:, :24, :24]).abs().mean().item()
        assert corner > 2e-3, corner  # the periphery is blurred

    uniform = StepRunner(r50, _cfg(tiny_coco, tmp_path, fixation="uniform"), fov, torch.device("cpu"))
    seen_u = _model_input(uniform, 3, images, targets)
    _, _, fix = uniform.prepare(3, images, targets)
    for got, ref, f in zip(seen_u, raw, fix):
        torch.testing.assert_close(got, fov(ref[None], f[None])[0], rtol=0, atol=1e-6)
    assert not torch.equal(fix, uniform.prepare(4, images, targets)[2])  # a new point each step

    control = StepRunner(r50, _cfg(tiny_coco, tmp_path, fixation="none"), None, torch.device("cpu"))
    for got, ref in zip(_model_input(control, 0, images, targets), raw):
        assert torch.equal(got, ref)


def test_hflip_moves_boxes_and_masks_with_the_image(r50, tiny_coco, tmp_path):
    from fovea_ray.train.loop import StepRunner

    images, targets = _raw_batch(tiny_coco)
    runner = StepRunner(r50, _cfg(tiny_coco, tmp_path, hflip=1.0, fixation="none"), None, torch.device("cpu"))
    got, tg, _ = runner.prepare(0, images, targets)
    w = images[0].shape[-1]
    assert torch.equal(got[0], images[0].float().div(255).flip(-1))
    assert torch.equal(tg[0]["masks"], targets[0]["masks"].flip(-1))
    b0, b1 = targets[0]["boxes"], tg[0]["boxes"]
    torch.testing.assert_close(b1[:, 0], w - b0[:, 2])
    torch.testing.assert_close(b1[:, 2], w - b0[:, 0])
    # The box still encloses the flipped mask.
    ys, xs = torch.nonzero(tg[0]["masks"][0], as_tuple=True)
    assert xs.min() >= b1[0, 0] - 1 and xs.max() <= b1[0, 2] + 1


def test_frozen_bn_calibration_normalises_a_random_backbone(tiny_coco, tmp_path):
    from fovea_ray.train.loop import build_training_model, calibrate_frozen_bn

    model = build_training_model(_cfg(tiny_coco, tmp_path), 91)
    images = [im.float() / 255 for im in _raw_batch(tiny_coco, 2)[0]]
    batch = model.transform(images)[0].tensors
    with torch.no_grad():
        before = model.backbone.body(batch)["3"].std().item()
        n = calibrate_frozen_bn(model, images)
        after = model.backbone.body(batch)["3"].std().item()
        x = model.backbone.body.conv1(batch)
        y = model.backbone.body.bn1(x)
    assert n == 53  # every frozen BN of ResNet-50
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(64), atol=1e-3, rtol=0)
    torch.testing.assert_close(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(64), atol=2e-3, rtol=0)
    assert 0.3 < after < 3 and before > 5 * after  # the random stack no longer blows up


def test_one_training_step_reduces_loss_on_the_same_batch(r50, tiny_coco, tmp_path):
    """Two steps on one batch: finite losses with torchvision's five parts; the second is
    lower (a weak, fast overfit check; the Ray test runs the real one)."""
    import copy

    from fovea_ray.train.loop import StepRunner, calibrate_frozen_bn

    model = copy.deepcopy(r50)
    images, targets = _raw_batch(tiny_coco)
    calibrate_frozen_bn(model, [im.float() / 255 for im in images])
    runner = StepRunner(
        model, _cfg(tiny_coco, tmp_path, lr=0.01, warmup_steps=0, fixation="none"), None, torch.device("cpu")
    )
    first = runner.step(0, images, targets)
    assert set(first) == {"loss", "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(v.item()) for v in first.values())
    second = runner.step(0, images, targets)  # the same step index: the same anchor/ROI samples
    assert second["loss"].item() < first["loss"].item()
    phases = runner.timer.collect()
    assert phases["total"] > 0 and 0 <= phases["loaded_to_foveated"] < phases["total"]


# ---------------------------------------------------------------- evaluation


def test_coco_eval_scores_ground_truth_as_perfect(tmp_path):
    """Ground truth fed back as detections scores AP 1 for boxes and masks; shifted boxes less."""
    from fovea_ray.train.dataset import CocoInstances, LabelMap, load_coco
    from fovea_ray.train.evaluate import coco_evaluate, to_coco_results

    ann, _ = _write_coco(tmp_path)
    data = json.loads(ann.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 5]  # no degenerate ground truth
    ann.write_text(json.dumps(data))
    coco = load_coco(ann)
    lm = LabelMap.for_categories(coco.getCatIds())
    _, t = CocoInstances(coco, tmp_path / "img", lm, train=False)[0]
    n = len(t["labels"])
    out = {
        "boxes": t["boxes"],
        "labels": t["labels"],
        "scores": torch.linspace(0.9, 0.5, n),
        "masks": t["masks"][:, None].float(),
    }
    perfect = coco_evaluate(coco, to_coco_results([out], [7], lm.category_ids), [7])
    assert perfect["bbox_AP"] == pytest.approx(1.0) and perfect["segm_AP"] == pytest.approx(1.0)
    shifted = dict(out, boxes=out["boxes"] + torch.tensor([3.0, 3.0, 3.0, 3.0]))
    worse = coco_evaluate(coco, to_coco_results([shifted], [7], lm.category_ids), [7])
    assert worse["bbox_AP"] < 0.9 and worse["segm_AP"] == pytest.approx(1.0)
    assert coco_evaluate(coco, [], [7])["bbox_AP"] == 0.0


def test_predict_runs_on_a_foveated_validation_set(r50, tiny_coco):
    from fovea_ray.foveation import Foveator
    from fovea_ray.train.dataset import CocoInstances, LabelMap, load_coco
    from fovea_ray.train.evaluate import coco_evaluate, predict

    coco = load_coco(tiny_coco / "instances.json")
    lm = LabelMap.for_categories(coco.getCatIds())
    ds = CocoInstances(coco, tiny_coco / "images", lm, train=False)
    keep = r50.roi_heads.detections_per_img
    r50.roi_heads.detections_per_img = 10  # a random head's 100 masks pasted at full size only cost time
    try:
        results, done, errors = predict(
            r50,
            ds,
            [0, 1],
            foveator=Foveator(pixels_per_degree=60.0),
            policy="center",
            seed=0,
            device=torch.device("cpu"),
            category_ids=lm.category_ids,
        )
    finally:
        r50.roi_heads.detections_per_img = keep
    assert r50.training  # restored
    assert done == [int(i) for i in ds.ids[:2]] and errors == []
    stats = coco_evaluate(coco, results, done)
    assert {"bbox_AP", "segm_AP", "bbox_AP50"} <= set(stats) and 0 <= stats["bbox_AP"] <= 1


# ---------------------------------------------------------------- checkpoints, config


def test_checkpoint_round_trip_and_discovery(r50, tiny_coco, tmp_path):
    from fovea_ray.foveation import Foveator
    from fovea_ray.model import build_model, weights_checksum
    from fovea_ray.train.checkpoint import list_checkpoints, load_train_state, write_checkpoint
    from fovea_ray.train.loop import StepRunner, checkpoint_meta

    cfg = _cfg(tiny_coco, tmp_path)
    runner = StepRunner(r50, cfg, None, torch.device("cpu"))
    fov = Foveator(pixels_per_degree=60.0)
    for step in (2, 10, 4):
        meta = checkpoint_meta(
            cfg, step, model=r50, category_ids=list(range(91)), foveator=fov, world_size=1, metrics={"loss": 1.0}
        )
        write_checkpoint(
            tmp_path / "run" / "ray_train" / f"checkpoint_{step:08d}", r50.state_dict(), meta, runner.state_dict()
        )
    half = tmp_path / "run" / "ray_train" / "checkpoint_00000099"  # killed mid-copy: no meta.json
    half.mkdir()
    torch.save({}, half / "model.pt")
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [10, 4, 2]
    newest = list_checkpoints(tmp_path / "run")[0][1]
    meta = json.loads((newest / "meta.json").read_text())
    assert meta["step"] == 10 and meta["arch"] == "resnet50" and meta["num_classes"] == 91
    assert meta["fixation_policy"] == "center" and meta["foveation"]["pixels_per_degree"] == 60.0
    assert set(torch.load(newest / "model.pt", weights_only=True)) == set(r50.state_dict())
    assert "optimizer" in load_train_state(newest)
    (half / "model.pt").unlink()
    half.rmdir()
    loaded = build_model("resnet50", tmp_path / "run", (128, 128))  # a training folder -> newest
    assert weights_checksum(loaded) == weights_checksum(r50)
    with pytest.raises(ValueError, match="prefix"):
        write_checkpoint(tmp_path / "bad", {"module.x": torch.zeros(1)}, {"step": 1})


def test_config_validation_and_round_trip(tmp_path):
    cfg = TrainConfig(ann_file="a.json", images="i", out=str(tmp_path), steps=50, batch_size=4, workers=2)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.base_lr() == pytest.approx(0.02 * 8 / 16) and cfg.warmup() == 5
    for bad in (
        {"fixation": "periphery"},
        {"steps": 0},
        {"trainable_layers": 6},
        {"min_size": 800},
        {"schedule": "linear"},
        {"hflip": 2.0},
        {"val_ann_file": "v.json"},
    ):
        with pytest.raises(InputError):
            TrainConfig(ann_file="a.json", images="i", out="o", **bad)
    with pytest.raises(InputError, match="unknown keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "stepz": 3})


def test_cli_bad_annotation_file_is_one_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fovea_ray.cli import main; main()",
            "train",
            "--ann-file",
            str(tmp_path / "none.json"),
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"fovea-ray: error: {tmp_path / 'none.json'}: annotation file not found"]


def test_annotations_and_images_from_fsspec_urls(tiny_coco):
    """s3://-style URLs work like paths (here fsspec's in-memory file system)."""
    import fsspec

    from fovea_ray.train.dataset import CocoInstances, LabelMap, load_coco

    fs = fsspec.filesystem("memory")
    fs.pipe("/tc/instances.json", (tiny_coco / "instances.json").read_bytes())
    for f in (tiny_coco / "images").iterdir():
        fs.pipe(f"/tc/images/{f.name}", f.read_bytes())
    local = load_coco(tiny_coco / "instances.json")
    remote = load_coco("memory://tc/instances.json")
    assert remote.dataset == local.dataset
    lm = LabelMap.for_categories(local.getCatIds())
    a = CocoInstances(local, tiny_coco / "images", lm)[1]
    b = CocoInstances(remote, "memory://tc/images", lm)[1]
    assert torch.equal(a[0], b[0]) and all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    with pytest.raises(InputError, match="memory://tc/nope.json: annotation file not found"):
        load_coco("memory://tc/nope.json")
