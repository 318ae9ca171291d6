"""fovea_ray.model: build_model, safe checkpoint loading, resolution and checksums."""

from __future__ import annotations

import json
import urllib.error
from collections import OrderedDict

import pytest
import torch

from fovea_ray.errors import FoveaRayError, InputError
from fovea_ray.model import build_model, load_checkpoint, resolve_checkpoint, weights_checksum

CANVAS = (96, 128)


class Payload:
    """A custom class: pickling an instance makes a checkpoint need arbitrary unpickling."""

    def __init__(self) -> None:
        self.note = "not a tensor"


@pytest.fixture(scope="module")
def r50():
    return build_model("resnet50", canvas=CANVAS, seed=3)


def test_same_seed_same_weights_and_global_rng_untouched(r50):
    torch.manual_seed(123)
    expected_draw = torch.rand(4)
    torch.manual_seed(123)
    again = build_model("resnet50", canvas=CANVAS, seed=3)
    assert torch.equal(torch.rand(4), expected_draw), "build_model consumed the global RNG"
    assert weights_checksum(again) == weights_checksum(r50) == r50.fovea_ray_info["checksum"]
    sd_a, sd_b = r50.state_dict(), again.state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    other = build_model("resnet50", canvas=CANVAS, seed=4)
    assert weights_checksum(other) != weights_checksum(r50)
    assert not r50.training


def test_checksum_is_order_independent_and_value_sensitive(r50):
    sd = r50.state_dict()
    reordered = OrderedDict(reversed(list(sd.items())))
    assert weights_checksum(reordered) == weights_checksum(sd)
    changed = OrderedDict(sd)
    key = "backbone.body.layer1.0.conv1.weight"
    changed[key] = sd[key].clone()
    changed[key].view(-1)[0] += 1e-6
    assert weights_checksum(changed) != weights_checksum(sd)


def test_r101_has_33_bottlenecks_and_canvas_is_not_rescaled():
    model = build_model("resnet101", canvas=(160, 192))
    body = model.backbone.body
    assert [len(getattr(body, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
    assert body.layer3[22].bn3.weight.shape == (1024,)
    images = [torch.rand(3, 160, 192), torch.rand(3, 100, 70)]
    with torch.no_grad():
        image_list, _ = model.transform(images)
    # Canvas-sized input keeps its size, and a smaller image keeps its native scale.
    assert image_list.image_sizes == [(160, 192), (100, 70)]
    assert tuple(image_list.tensors.shape[-2:]) == (160, 192)
    normalised = (images[0] - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[
        :, None, None
    ]
    torch.testing.assert_close(image_list.tensors[0], normalised)


def test_bad_arguments_are_clear():
    with pytest.raises(InputError, match="unknown arch"):
        build_model("vgg16", canvas=CANVAS)
    with pytest.raises(InputError, match="canvas"):
        build_model("resnet50", canvas=(8, 8))
    with pytest.raises(InputError, match="resnet50"):
        build_model("resnet101", weights="torchvision", canvas=CANVAS)


def test_torchvision_weights_offline_error_names_url_and_cache(monkeypatch, tmp_path):
    import torchvision.models._api as api

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(FoveaRayError) as info:
        build_model("resnet50", weights="torchvision", canvas=CANVAS)
    message = str(info.value)
    assert "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco" in message
    assert str(tmp_path) in message and "could not be fetched" in message


def test_checkpoint_layouts_load_strictly(r50, tmp_path):
    sd = r50.state_dict()
    plain = tmp_path / "plain.pt"
    torch.save(sd, plain)
    ddp = tmp_path / "ddp.pt"
    torch.save({"model": OrderedDict((f"module.{k}", v) for k, v in sd.items()), "step": 7}, ddp)
    nested = tmp_path / "nested.pth"
    torch.save({"state_dict": sd}, nested)
    expected = weights_checksum(r50)
    for path in (plain, ddp, nested):
        loaded = load_checkpoint(path)
        assert list(loaded) == list(sd)
        assert weights_checksum(loaded) == expected
    model = build_model("resnet50", weights=str(ddp), canvas=CANVAS, seed=99)
    assert weights_checksum(model) == expected
    assert model.fovea_ray_info["weights"] == str(ddp)


def test_training_directory_resolves_to_newest_step(tmp_path):
    for name, step in (("checkpoint_000002", 20), ("checkpoint_000010", 5), ("checkpoint_000003", 30)):
        folder = tmp_path / "run" / name
        folder.mkdir(parents=True)
        torch.save({"w": torch.tensor([float(step)])}, folder / "model.pt")
        (folder / "meta.json").write_text(json.dumps({"step": step, "arch": "resnet50"}))
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoint_000003" / "model.pt"
    assert load_checkpoint(tmp_path / "run")["w"].item() == 30.0
    # Without meta.json, the natural name order decides (10 after 9).
    for name in ("ckpt_9", "ckpt_10"):
        (tmp_path / "bare" / name).mkdir(parents=True)
        torch.save({"w": torch.zeros(1)}, tmp_path / "bare" / name / "model.pt")
    assert resolve_checkpoint(tmp_path / "bare").parent.name == "ckpt_10"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model.pt"):
        resolve_checkpoint(tmp_path / "empty")
    with pytest.raises(InputError, match="not found"):
        resolve_checkpoint(tmp_path / "missing")


def test_arch_recorded_in_meta_must_match(tmp_path, r50):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save(r50.state_dict(), folder / "model.pt")
    (folder / "meta.json").write_text(json.dumps({"step": 1, "arch": "resnet50"}))
    with pytest.raises(InputError, match="arch 'resnet50'"):
        build_model("resnet101", weights=folder, canvas=CANVAS)


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Payload()}, path)
    with pytest.raises(FoveaRayError, match="pickled Python object") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "arbitrary code" in str(info.value)
    whole_module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), whole_module)
    with pytest.raises(FoveaRayError, match="refused"):
        load_checkpoint(whole_module)


def test_unreadable_and_mismatched_checkpoints(tmp_path, r50):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InputError, match="junk.pt"):
        load_checkpoint(junk)
    wrong = tmp_path / "wrong.pt"
    sd = r50.state_dict()
    sd["extra.weight"] = torch.zeros(1)
    del sd["backbone.fpn.layer_blocks.0.0.bias"]
    torch.save(sd, wrong)
    with pytest.raises(InputError) as info:
        build_model("resnet50", weights=wrong, canvas=CANVAS)
    message = str(info.value)
    assert "1 missing keys: backbone.fpn.layer_blocks.0.0.bias" in message
    assert "1 unexpected keys: extra.weight" in message
