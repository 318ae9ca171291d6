"""The model spec grammar (torch-free) shared by --model, --weights and --network."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fovea_ray.model.spec import model_from_arch, parse_model, parse_network


@pytest.mark.parametrize(
    ("text", "kind", "name", "weights"),
    [
        ("maskrcnn_resnet101_fpn", "detection", "maskrcnn_resnet101_fpn", None),
        ("maskrcnn_resnet50_fpn@torchvision", "detection", "maskrcnn_resnet50_fpn", "torchvision"),
        ("resnet50", "torchvision", "resnet50", None),
        ("vit_b_16@IMAGENET1K_V1", "torchvision", "vit_b_16", "IMAGENET1K_V1"),
        ("timm:convnext_atto@pretrained", "timm", "timm:convnext_atto", "pretrained"),
        ("mypkg.nets:small", "factory", "mypkg.nets:small", None),
        ("mypkg.nets:small@runs/a@b/model.pt", "factory", "mypkg.nets:small", "runs/a@b/model.pt"),
        ("  resnet18 @ none ", "torchvision", "resnet18", "none"),
    ],
)
def test_parse_model(text, kind, name, weights):
    ref = parse_model(text)
    assert (ref.kind, ref.name, ref.weights) == (kind, name, weights)
    assert parse_model(str(ref)) == ref  # round trip


def test_parse_model_default_weights_and_arch():
    assert parse_model("resnet50", weights="none").weights == "none"
    assert parse_model("resnet50@DEFAULT", weights="none").weights == "DEFAULT"  # the spec's own wins
    assert parse_model("timm:resnet18").target == "resnet18"
    assert parse_model("maskrcnn_resnet50_fpn").arch == "resnet50"
    assert parse_model("resnet50").arch is None
    assert model_from_arch("resnet101") == "maskrcnn_resnet101_fpn"
    with pytest.raises(ValueError, match="unknown arch 'resnet152'"):
        model_from_arch("resnet152")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty model spec"),
        ("resnet50@", "no weights after '@'"),
        ("@none", "no model before '@'"),
        ("timm:", "bad timm model"),
        ("my-pkg:f", "bad factory"),
        ("res net", "bad model name"),
    ],
)
def test_parse_model_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_model(text)


def test_parse_network():
    net = parse_network("coco=maskrcnn_resnet50_fpn@torchvision")
    assert net.name == "coco" and net.model.name == "maskrcnn_resnet50_fpn" and net.model.weights == "torchvision"
    trained = parse_network("trained=runs/foveated/")  # NAME=WEIGHTS: the default model
    assert trained.model.name == "maskrcnn_resnet101_fpn" and trained.model.weights == "runs/foveated/"
    vit = parse_network("vit.random=vit_b_16@none", default_model="resnet50")
    assert (vit.name, vit.model.name, vit.model.weights) == ("vit.random", "vit_b_16", "none")
    assert str(vit) == "vit.random=vit_b_16@none"
    for bad, message in [("noequals", "NAME=MODEL@WEIGHTS"), ("a/b=none", "bad network name"), ("x=", "nothing after")]:
        with pytest.raises(ValueError, match=message):
            parse_network(bad)


def test_spec_module_does_not_import_torch():
    code = "import sys, fovea_ray.model.spec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
