"""build_model for networks other than the study's detector: torchvision, timm, user factories.

Random weights only (no internet): torchvision weight enums are checked for their input
metadata, never downloaded. Each bad input gives one InputError line naming the problem.
"""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn
from torchvision.transforms.v2.functional import resize

from fovea_ray.cli import main as cli_main
from fovea_ray.errors import InputError
from fovea_ray.model import build_model, weights_checksum
from fovea_ray.model.spec import parse_model
from fovea_ray.model.zoo import InputSpec, _input_spec, _weights_enum
from fovea_ray.train.checkpoint import write_checkpoint


def test_arch_keeps_meaning_maskrcnn():
    net = build_model("resnet50", canvas=64)
    assert type(net).__name__ == "MaskRCNN"
    same = build_model(model="maskrcnn_resnet50_fpn", canvas=64)
    assert weights_checksum(net) == weights_checksum(same)
    assert net.fovea_ray_info["default_layer"] == "backbone.body.layer3.5.bn3"
    with pytest.raises(InputError, match="not both"):
        build_model("resnet50", model="resnet50")


def test_classifier_is_the_torchvision_module_seeded():
    net = build_model(model="resnet18", canvas=96, seed=3)
    ref = torchvision.models.resnet18()
    assert type(net) is type(ref) and not net.training
    assert [n for n, _ in net.named_modules()] == [n for n, _ in ref.named_modules()]
    again = build_model(model="resnet18@none", seed=3)
    other = build_model(model="resnet18", seed=4)
    assert weights_checksum(net) == weights_checksum(again) != weights_checksum(other)
    info = net.fovea_ray_info
    assert info["kind"] == "torchvision" and info["input"]["size"] == [224, 224]
    assert info["default_layer"] == "layer3.0"  # resnet18's layer3 holds 2 blocks
    state = torch.random.get_rng_state()
    build_model(model="resnet18", seed=9)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched


def test_weight_enum_input_metadata_without_download():
    ref = parse_model("resnet50@IMAGENET1K_V2")
    entry = _weights_enum("resnet50", "IMAGENET1K_V2")
    spec = _input_spec(ref, torchvision.models.resnet50(), entry, {})
    assert spec.size == (224, 224) and spec.mean == (0.485, 0.456, 0.406) and spec.interpolation == "bilinear"
    assert _weights_enum("vit_b_16", "DEFAULT") is torchvision.models.ViT_B_16_Weights.DEFAULT
    with pytest.raises(InputError, match="resnet50 has no weights 'IMAGENET9K'.*IMAGENET1K_V2"):
        _weights_enum("resnet50", "IMAGENET9K")


def test_input_spec_resizes_the_whole_canvas_and_normalises():
    spec = InputSpec((32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.rand(2, 3, 64, 64)
    out = spec(x)
    expected = (resize(x, [32, 32], antialias=True) - 0.5) / 0.25
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert InputSpec.from_dict(spec.to_dict()) == spec


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(InputError, match="unknown model 'resnet05'; nearest: resnet50"):
        build_model(model="resnet05")
    with pytest.raises(InputError, match="unknown arch 'resnet152'"):
        build_model("resnet152")
    with pytest.raises(InputError, match="cannot import module 'no_such_pkg.nets'"):
        build_model(model="no_such_pkg.nets:f")
    with pytest.raises(InputError, match="nearest: tiny_mlp_tokens"):
        build_model(model="_factories:tiny_mlp_token")


def test_factory_must_return_a_module(capsys):
    with pytest.raises(InputError, match=r"_factories:not_a_module returned a dict, not a torch nn.Module"):
        build_model(model="_factories:not_a_module")
    net = build_model(model="_factories:tiny_mlp_tokens", seed=1)
    assert isinstance(net, nn.Module) and net.fovea_ray_info["default_layer"] == "embed"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["info", "--model", "_factories:not_a_module"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "returned a dict" in err[0]


def test_state_dict_that_does_not_fit_names_the_keys(tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(InputError, match=r"weights do not fit the model: \d+ missing keys: layer1\.2\."):
        build_model(model="resnet34", weights=str(path))
    net = build_model(model="resnet18", weights=path)  # a PathLike works too
    assert weights_checksum(net) == weights_checksum(torch.load(path, weights_only=True))


def test_pretrain_folder_newest_checkpoint(tmp_path):
    """A `fovea-ray pretrain` folder: OUT/<run>/checkpoint_<step>/model.pt + meta.json."""
    meta = {
        "kind": "pretrain",
        "arch": "resnet18",
        "num_classes": 5,
        "classes": ["a", "b", "c", "d", "e"],
        "input_size": 96,
        "normalize": {"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]},
    }
    torch.manual_seed(0)
    old = torchvision.models.resnet18(num_classes=5).state_dict()
    new = torchvision.models.resnet18(num_classes=5).state_dict()
    write_checkpoint(tmp_path / "run" / "checkpoint_000010", new, {**meta, "step": 10})
    write_checkpoint(tmp_path / "run" / "checkpoint_000002", old, {**meta, "step": 2})
    net = build_model(model="resnet18", weights=str(tmp_path))
    assert net.fc.out_features == 5
    assert net.fovea_ray_info["checksum"] == weights_checksum(new) != weights_checksum(old)
    assert net.fovea_ray_info["input"]["size"] == [96, 96]
    assert net.fovea_ray_info["input"]["mean"] == [0.4, 0.4, 0.4]
    with pytest.raises(InputError, match="pretrain checkpoint is for 'resnet18', not 'resnet34'"):
        build_model(model="resnet34", weights=str(tmp_path))
    with pytest.raises(InputError, match="pretrain. classifier checkpoint"):
        build_model("resnet50", weights=str(tmp_path))
    json.loads((tmp_path / "run" / "checkpoint_000010" / "meta.json").read_text())


def test_timm_model_when_installed():
    timm = pytest.importorskip("timm")
    net = build_model(model="timm:vit_tiny_patch16_224", seed=0)
    assert isinstance(net, timm.models.VisionTransformer)
    info = net.fovea_ray_info
    assert info["prefix_tokens"] == 1 and info["default_layer"] == "blocks.5"
    assert info["input"]["mean"] == [0.5, 0.5, 0.5] and info["input"]["interpolation"] == "bicubic"
    with pytest.raises(InputError, match="unknown timm model 'vit_tiny_patch16_2244'; nearest: vit_tiny_patch16_224"):
        build_model(model="timm:vit_tiny_patch16_2244")
