"""`fovea-ray pretrain` without Ray: the synthetic ImageFolder, the columnar index and its
one-line errors, the seeded step order, decoding with corrupt files, the training step
(foveation before the crop, exactness, the recipe's parameter groups) and the checkpoint
loaded as Mask R-CNN backbone weights."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from fovea_ray.errors import InputError


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from fovea_ray.data.synthetic_imagefolder import make_synthetic_imagefolder

    return make_synthetic_imagefolder(tmp_path_factory.mktemp("sif"), n_train=6, n_val=2, n_classes=3, seed=1)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.JPEG")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_synthetic_imagefolder_layout_sizes_and_seed(folder, tmp_path):
    from PIL import Image

    from fovea_ray.data.synthetic_imagefolder import make_synthetic_imagefolder

    classes = sorted(p.name for p in (folder / "train").iterdir())
    assert classes == ["n00000001_disc", "n00000002_square", "n00000003_triangle"]
    assert sorted(p.name for p in (folder / "val").iterdir()) == classes
    sizes = {Image.open(p).size for p in (folder / "train").rglob("*.JPEG")}
    assert len(sizes) > 5 and all(40 <= s <= 72 for wh in sizes for s in wh)
    again = make_synthetic_imagefolder(tmp_path / "again", n_train=6, n_val=2, n_classes=3, seed=1)
    assert _digest(again) == _digest(folder)
    other = make_synthetic_imagefolder(tmp_path / "other", n_train=6, n_val=2, n_classes=3, seed=2)
    assert _digest(other) != _digest(folder)


def test_index_is_columnar_sorted_and_labelled(folder):
    from fovea_ray.pretrain.index import index_imagefolder, probe_images

    idx = index_imagefolder(str(folder), "train")
    assert len(idx) == 18 and idx.classes[0] == "n00000001_disc"
    assert isinstance(idx.names, pa.ChunkedArray) and idx.labels.dtype == np.int32
    names = idx.names.to_pylist()
    assert names == sorted(names)
    assert [idx.classes[label] for label in idx.labels] == [n.split("/")[0] for n in names]
    assert probe_images(idx, 100) == 18
    val = index_imagefolder(str(folder), "val", classes=idx.classes)
    assert len(val) == 6 and val.classes == idx.classes


def test_index_errors_name_the_folder_or_file(folder, tmp_path):
    from fovea_ray.pretrain.index import index_imagefolder, probe_images

    with pytest.raises(InputError, match=r"/nothing/train: not found"):
        index_imagefolder(str(tmp_path / "nothing"), "train")
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "train" / "n00000009_empty").mkdir()
    with pytest.raises(InputError, match=r"n00000009_empty: empty class folder"):
        index_imagefolder(str(bad), "train")
    (bad / "train" / "n00000009_empty").rmdir()
    (bad / "val" / "n00000010_extra").mkdir()
    train = index_imagefolder(str(bad), "train")
    with pytest.raises(InputError, match=r"n00000010_extra: class not in the training set"):
        index_imagefolder(str(bad), "val", classes=train.classes)
    # An unreadable image that the probe reaches stops the run before it starts.
    first = bad / "train" / "n00000001_disc" / "n00000001_disc_0.JPEG"
    first.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"n00000001_disc_0.JPEG: unreadable image") as info:
        probe_images(index_imagefolder(str(bad), "train"), 2)
    assert "\n" not in str(info.value)
    loose = tmp_path / "loose" / "train"
    loose.mkdir(parents=True)
    shutil.copy(first.parent / "n00000001_disc_1.JPEG", loose / "a.JPEG")
    with pytest.raises(InputError, match=r"no class folders \(1 images lie directly in it"):
        index_imagefolder(str(tmp_path / "loose"), "train")


def test_step_order_visits_each_image_once_per_epoch_and_splits_ranks():
    from fovea_ray.pretrain.data import train_positions

    n, batch, world, steps = 10, 3, 2, 10  # 60 rows = 6 epochs; batches straddle epochs
    per_rank = [
        train_positions(np.arange(steps * batch), rank=r, world=world, batch=batch, n=n, seed=5) for r in range(2)
    ]
    order = np.concatenate([np.stack([p.reshape(steps, batch) for p in per_rank], 1).reshape(-1)])
    for epoch in range(6):
        assert sorted(order[epoch * n : (epoch + 1) * n].tolist()) == list(range(n))
    assert order[:n].tolist() != order[n : 2 * n].tolist()  # reshuffled per epoch
    # Resuming at step 4 gives the uninterrupted run's rows: a function of (seed, step, rank).
    tail = train_positions(np.arange(4 * batch, steps * batch), rank=1, world=world, batch=batch, n=n, seed=5)
    assert tail.tolist() == per_rank[1][4 * batch :].tolist()


def test_read_rows_skips_and_flags_a_corrupt_file(folder, tmp_path):
    from fovea_ray.pretrain.data import decode_rgb, read_rows
    from fovea_ray.pretrain.index import index_imagefolder

    bad = tmp_path / "corrupt"
    shutil.copytree(folder, bad)
    victim = bad / "train" / "n00000002_square" / "n00000002_square_3.JPEG"
    victim.write_bytes(victim.read_bytes()[:100])  # a truncated JPEG
    idx = index_imagefolder(str(bad), "train")
    rows = np.arange(len(idx))
    out = read_rows(rows, idx.table(), idx.root, max_side=None)
    assert out["ok"].sum() == len(idx) - 1
    broken = int(np.flatnonzero(~out["ok"])[0])
    assert idx.names[broken].as_py().endswith("n00000002_square_3.JPEG") and out["image"][broken].shape == (1, 1, 3)
    assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for im in out["image"])
    big = decode_rgb((folder / "train" / "n00000001_disc" / "n00000001_disc_0.JPEG").read_bytes(), max_side=20)
    assert max(big.shape[:2]) == 20


def _cfg(folder: Path, **kw):
    from fovea_ray.pretrain.config import PretrainConfig

    base = dict(data=str(folder), out="/unused", arch="resnet18", input_size=32, batch_size=4, steps=5, hflip=0.5)
    return PretrainConfig(**{**base, **kw})


def _batch(folder: Path, n: int = 4) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    from fovea_ray.pretrain.data import read_rows
    from fovea_ray.pretrain.index import index_imagefolder

    idx = index_imagefolder(str(folder), "train")
    out = read_rows(np.array([0, 7, 12, 17][:n]), idx.table(), idx.root, None)
    return list(out["image"]), out["label"], out["row"]


def test_step_foveates_in_image_geometry_before_the_crop_and_is_exact(folder):
    from fovea_ray.foveation import Foveator
    from fovea_ray.pretrain.step import ClassifierStep, build_classifier, center_crop_box, random_resized_crop_box

    images, labels, _ = _batch(folder)
    # At 70 px/degree the blur starts about 20 px from the fixation (below 0.5 cycles/px),
    # so the synthetic 40-72 px images are foveated visibly.
    fov = Foveator(pixels_per_degree=70.0)

    def runner(policy: str, seed: int = 0) -> ClassifierStep:
        cfg = _cfg(folder, fixation=policy)
        return ClassifierStep(build_classifier("resnet18", 3, 0), cfg, fov, torch.device("cpu"), steps=5)

    center, fix = runner("center").prepare(3, images)
    assert center.shape == (4, 3, 32, 32) and fix.shape == (4, 2)
    h, w = images[0].shape[:2]
    assert fix[0].tolist() == [(w - 1) / 2, (h - 1) / 2]  # the fixation is in the source image's pixels
    again, _ = runner("center").prepare(3, images)
    assert torch.equal(center, again)  # same (seed, step, rank): same crops, flips, fixations
    other, _ = runner("center").prepare(4, images)
    assert not torch.equal(center, other)
    plain, none_fix = runner("none").prepare(3, images)
    assert none_fix is None and not torch.equal(plain, center)
    # Replay the step's generator (hflip off): the input is the crop of the image foveated
    # at its own centre, not the crop foveated at the crop's centre.
    import torch.nn.functional as F

    from fovea_ray.pretrain.config import IMAGENET_MEAN, IMAGENET_STD
    from fovea_ray.pretrain.step import step_seed

    cfg = _cfg(folder, fixation="center", hflip=0.0)
    got, fix = ClassifierStep(build_classifier("resnet18", 3, 0), cfg, fov, torch.device("cpu"), steps=5).prepare(
        2, images
    )
    g = torch.Generator().manual_seed(step_seed(0, 2, 0))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for i, arr in enumerate(images):
        im = torch.from_numpy(np.array(arr)).permute(2, 0, 1).float() / 255
        h, w = im.shape[-2:]
        top, left, bh, bw = random_resized_crop_box(h, w, g, cfg.crop_scale, cfg.crop_ratio)
        assert 0 <= top and top + bh <= h and 0 <= left and left + bw <= w

        def resize(x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x[None], size=(32, 32), mode="bilinear", antialias=True)[0]

        fov_then_crop = resize(fov(im[None], fix[i : i + 1])[0][:, top : top + bh, left : left + bw])
        assert torch.allclose(got[i], (fov_then_crop - mean) / std, atol=1e-5)
        crop = im[:, top : top + bh, left : left + bw]
        crop_then_fov = resize(fov(crop[None], torch.tensor([[(bw - 1) / 2, (bh - 1) / 2]]))[0])
        if (top, left, bh, bw) != (0, 0, h, w):
            assert not torch.allclose(got[i], (crop_then_fov - mean) / std, atol=1e-3)
    top, left, side, _ = center_crop_box(h, w, 0.875)
    assert side == round(min(h, w) * 0.875) and top == (h - side) // 2 and left == (w - side) // 2


def test_training_steps_are_bit_identical_and_groups_skip_bn_and_bias(folder):
    from fovea_ray.foveation import Foveator
    from fovea_ray.pretrain.step import ClassifierStep, build_classifier, param_groups

    images, labels, rows = _batch(folder)
    model = build_classifier("resnet18", 3, 0)
    decay, no_decay = param_groups(model, 1e-4)
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0 and len(no_decay["params"]) > 20  # every BN weight/bias and fc.bias

    def losses(resume_at: int | None = None) -> list[float]:
        cfg = _cfg(folder, fixation="uniform", lr=0.05)
        run = ClassifierStep(build_classifier("resnet18", 3, 0), cfg, Foveator(pixels_per_degree=70.0), "cpu", steps=5)
        out = []
        for step in range(5):
            if resume_at is not None and step == resume_at:
                state, opt = run.model.state_dict(), run.state_dict()
                run = ClassifierStep(
                    build_classifier("resnet18", 3, 7), cfg, Foveator(pixels_per_degree=70.0), "cpu", steps=5
                )
                run.model.load_state_dict(state)
                run.load_state_dict(opt)
            out.append(run.step(step, images, labels)["loss"].item())
        return out

    first = losses()
    assert losses(resume_at=3) == first  # weights + optimizer state + per-step seeds = the same steps
    assert first[-1] < first[0]
    run = ClassifierStep(build_classifier("resnet18", 3, 0), _cfg(folder, fixation="none"), None, "cpu", steps=5)
    assert run.optimizer.defaults["nesterov"] and run.criterion.label_smoothing == 0.1
    assert run.lr(0) < run.lr(run.cfg.warmup()) or run.cfg.warmup() == 0
    top1, top5, n = run.evaluate(images, labels, rows).tolist()
    assert n == 4 and 0 <= top1 <= top5 == 4  # 3 classes: top-5 holds every label


def _fake_pretrain_dir(tmp_path: Path, arch: str) -> tuple[Path, dict]:
    from fovea_ray.pretrain.checkpoint import pretrain_meta
    from fovea_ray.pretrain.config import PretrainConfig
    from fovea_ray.pretrain.step import build_classifier
    from fovea_ray.train.checkpoint import write_checkpoint

    cfg = PretrainConfig(data="/d", out=str(tmp_path), arch=arch)
    model = build_classifier(arch, 5, 3)
    for step in (2, 4):
        meta = pretrain_meta(
            cfg, step, steps=4, classes=list("abcde"), foveator=None, world_size=1, metrics={}, skipped_images=0
        )
        write_checkpoint(tmp_path / "ray_train" / f"checkpoint_{step:08d}", model.state_dict(), meta)
    return tmp_path, model.state_dict()


def test_pretrain_checkpoint_loads_as_backbone_weights_and_refuses_another_arch(tmp_path):
    from fovea_ray.model import build_model
    from fovea_ray.pretrain.checkpoint import load_pretrained
    from fovea_ray.train.loop import load_backbone_weights

    out, state = _fake_pretrain_dir(tmp_path, "resnet50")
    arch, loaded, meta = load_pretrained(out)
    assert arch == "resnet50" and meta["step"] == 4 and meta["kind"] == "pretrain" and meta["classes"] == list("abcde")
    assert {"fixation_policy", "foveation", "config", "input_size", "normalize", "num_classes"} <= set(meta)
    assert loaded.keys() == state.keys() and not any(k.startswith("module.") for k in loaded)
    detector = build_model("resnet50", None, (64, 64), num_classes=3)
    load_backbone_weights(detector, str(out), "resnet50")
    body = detector.backbone.body.state_dict()
    assert torch.equal(body["layer3.2.conv2.weight"], state["layer3.2.conv2.weight"])
    assert torch.equal(body["bn1.running_var"], state["bn1.running_var"])
    with pytest.raises(InputError, match="pretrained resnet50 backbone .* cannot initialise a resnet101") as info:
        load_backbone_weights(build_model("resnet101", None, (64, 64), num_classes=3), str(out), "resnet101")
    assert "\n" not in str(info.value)
    newest = out / "ray_train" / "checkpoint_00000004" / "model.pt"
    assert load_pretrained(newest)[2]["step"] == 4 and load_pretrained(newest.parent)[2]["step"] == 4
    plain = tmp_path / "resnet50-plain.pth"
    torch.save(state, plain)  # a plain state dict beside the folder: loaded as before, not searched
    detector2 = build_model("resnet50", None, (64, 64), num_classes=3)
    load_backbone_weights(detector2, str(plain), "resnet50")
    assert torch.equal(detector2.backbone.body.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    with pytest.raises(InputError, match="no complete fovea-ray pretrain checkpoint"):
        load_pretrained(tmp_path / "ray_train" / "nothing")


def test_index_and_read_through_an_fsspec_url(folder):
    import fsspec

    from fovea_ray.pretrain.data import read_rows
    from fovea_ray.pretrain.index import index_imagefolder

    fs = fsspec.filesystem("memory")
    for p in (folder / "train").rglob("*.JPEG"):
        fs.pipe(f"/sif-url/train/{p.parent.name}/{p.name}", p.read_bytes())
    idx = index_imagefolder("memory://sif-url", "train")
    local = index_imagefolder(str(folder), "train")
    assert idx.root == "memory://sif-url/train" and idx.names.to_pylist() == local.names.to_pylist()
    out = read_rows(np.array([0, 17]), idx.table(), idx.root, None)
    ref = read_rows(np.array([0, 17]), local.table(), local.root, None)
    assert out["ok"].all() and all(np.array_equal(a, b) for a, b in zip(out["image"], ref["image"]))
    with pytest.raises(InputError, match=r"memory://nowhere/train: not found"):
        index_imagefolder("memory://nowhere", "train")
