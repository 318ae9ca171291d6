"""fovea_ray.model.convert: maskrcnn-benchmark / detectron2 -> torchvision.

The synthetic source checkpoints are written here from each framework's own naming
scheme (not from the converter's tables), with the shapes of an R-FPN Mask R-CNN.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fovea_ray.errors import FoveaRayError, InputError
from fovea_ray.model import build_model, load_checkpoint, weights_checksum
from fovea_ray.model.build import apply_conventions, load_state_dict_strict
from fovea_ray.model.convert import (
    COCO_CATEGORY_IDS,
    convert_checkpoint,
    convert_state_dict,
    main,
    to_source_state_dict,
)

DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
MB_MEAN_BGR = [102.9801, 115.9465, 122.7717]


class Payload:
    pass


def _bn(g, prefix, c):
    return {
        f"{prefix}weight": 0.5 + 0.5 * torch.rand(c, generator=g),
        f"{prefix}bias": 0.1 * torch.randn(c, generator=g),
        f"{prefix}running_mean": 0.1 * torch.randn(c, generator=g),
        f"{prefix}running_var": 0.5 + torch.rand(c, generator=g),
    }


def _conv(g, shape):
    fan_in = int(np.prod(shape[1:]))
    return torch.randn(*shape, generator=g) * (1.0 / fan_in) ** 0.5


def synthetic_resnet_fpn(arch: str, style: str, seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """A Mask R-CNN R-FPN state dict in maskrcnn-benchmark ("mb") or detectron2 ("d2") names."""
    g = torch.Generator().manual_seed(seed)
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()
    mb = style == "mb"
    body = "backbone.body." if mb else "backbone.bottom_up."
    sd[f"{body}stem.conv1.weight"] = _conv(g, (64, 3, 7, 7))
    sd.update(_bn(g, f"{body}stem.bn1." if mb else f"{body}stem.conv1.norm.", 64))
    in_ch, outs = 64, []
    for s, depth in enumerate(DEPTHS[arch], start=1):
        planes = 64 * 2 ** (s - 1)
        out = planes * 4
        for b in range(depth):
            stage = f"{body}layer{s}.{b}." if mb else f"{body}res{s + 1}.{b}."
            shapes = {1: (planes, in_ch if b == 0 else out, 1, 1), 2: (planes, planes, 3, 3), 3: (out, planes, 1, 1)}
            for k, shape in shapes.items():
                sd[f"{stage}conv{k}.weight"] = _conv(g, shape)
                sd.update(_bn(g, f"{stage}bn{k}." if mb else f"{stage}conv{k}.norm.", shape[0]))
            if b == 0:
                sd[f"{stage}downsample.0.weight" if mb else f"{stage}shortcut.weight"] = _conv(g, (out, in_ch, 1, 1))
                sd.update(_bn(g, f"{stage}downsample.1." if mb else f"{stage}shortcut.norm.", out))
        in_ch = out
        outs.append(out)
    for k, c in enumerate(outs, start=1):
        inner, layer = (
            (f"backbone.fpn.fpn_inner{k}", f"backbone.fpn.fpn_layer{k}")
            if mb
            else (f"backbone.fpn_lateral{k + 1}", f"backbone.fpn_output{k + 1}")
        )
        sd[f"{inner}.weight"], sd[f"{inner}.bias"] = _conv(g, (256, c, 1, 1)), torch.zeros(256)
        sd[f"{layer}.weight"], sd[f"{layer}.bias"] = _conv(g, (256, 256, 3, 3)), torch.zeros(256)
    rpn = "rpn.head." if mb else "proposal_generator.rpn_head."
    names = ("conv", "cls_logits", "bbox_pred") if mb else ("conv", "objectness_logits", "anchor_deltas")
    for name, shape in zip(names, ((256, 256, 3, 3), (3, 256, 1, 1), (12, 256, 1, 1))):
        sd[f"{rpn}{name}.weight"], sd[f"{rpn}{name}.bias"] = _conv(g, shape), 0.01 * torch.randn(shape[0], generator=g)
    if mb:
        for level in range(5):
            sd[f"rpn.anchor_generator.cell_anchors.{level}"] = torch.randn(3, 4, generator=g)
    box = "roi_heads.box.feature_extractor." if mb else "roi_heads.box_head."
    for name, shape in zip(("fc6", "fc7") if mb else ("fc1", "fc2"), ((1024, 256 * 7 * 7), (1024, 1024))):
        sd[f"{box}{name}.weight"], sd[f"{box}{name}.bias"] = _conv(g, shape), 0.01 * torch.randn(1024, generator=g)
    pred = "roi_heads.box.predictor." if mb else "roi_heads.box_predictor."
    n_box = 81 * 4 if mb else 80 * 4
    sd[f"{pred}cls_score.weight"], sd[f"{pred}cls_score.bias"] = _conv(g, (81, 1024)), torch.randn(81, generator=g)
    sd[f"{pred}bbox_pred.weight"], sd[f"{pred}bbox_pred.bias"] = (
        _conv(g, (n_box, 1024)),
        torch.randn(n_box, generator=g),
    )
    mask = "roi_heads.mask.feature_extractor.mask_fcn" if mb else "roi_heads.mask_head.mask_fcn"
    for k in range(1, 5):
        sd[f"{mask}{k}.weight"], sd[f"{mask}{k}.bias"] = _conv(g, (256, 256, 3, 3)), torch.zeros(256)
    deconv = "roi_heads.mask.predictor.conv5_mask" if mb else "roi_heads.mask_head.deconv"
    logits = "roi_heads.mask.predictor.mask_fcn_logits" if mb else "roi_heads.mask_head.predictor"
    n_mask = 81 if mb else 80
    sd[f"{deconv}.weight"], sd[f"{deconv}.bias"] = _conv(g, (256, 256, 2, 2)), torch.zeros(256)
    sd[f"{logits}.weight"], sd[f"{logits}.bias"] = _conv(g, (n_mask, 256, 1, 1)), torch.randn(n_mask, generator=g)
    if not mb:
        sd["pixel_mean"] = torch.tensor([103.53, 116.28, 123.675]).view(3, 1, 1)
        sd["pixel_std"] = torch.tensor([57.375, 57.12, 58.395]).view(3, 1, 1)
    return sd


@pytest.fixture(scope="module")
def mb101():
    return synthetic_resnet_fpn("resnet101", "mb")


@pytest.fixture(scope="module")
def converted_mb101(mb101):
    ddp = OrderedDict((f"module.{k}", v) for k, v in mb101.items())
    tv, conventions, extras = convert_state_dict(ddp)
    model = build_model("resnet101", canvas=(64, 64))
    apply_conventions(model, conventions)
    load_state_dict_strict(model, tv, "synthetic mb")  # strict: every key and shape fits
    return tv, conventions, extras, model


def test_maskrcnn_benchmark_round_trip(mb101, converted_mb101):
    tv, conventions, extras, model = converted_mb101
    assert conventions["source"] == "maskrcnn-benchmark" and conventions["arch"] == "resnet101"
    assert (
        conventions["stride_in_1x1"] and conventions["frozen_bn_eps"] == 0.0 and conventions["input_format"] == "BGR255"
    )
    own = model.state_dict()
    assert set(tv) == set(own) and all(tv[k].shape == own[k].shape for k in tv)
    back = to_source_state_dict(tv, conventions, extras)
    assert list(back) != [] and set(back) == set(mb101)
    for key, value in mb101.items():
        assert back[key].shape == value.shape and torch.equal(back[key], value), key
    # Names: a few by hand.
    assert torch.equal(tv["backbone.fpn.inner_blocks.2.0.weight"], mb101["backbone.fpn.fpn_inner3.weight"])
    assert torch.equal(tv["roi_heads.mask_head.3.0.weight"], mb101["roi_heads.mask.feature_extractor.mask_fcn4.weight"])
    assert torch.equal(tv["backbone.body.conv1.weight"], mb101["backbone.body.stem.conv1.weight"][:, [2, 1, 0]])


def test_coco_expansion_keeps_the_softmax(mb101, converted_mb101):
    tv = converted_mb101[0]
    features = torch.randn(5, 1024)
    source = torch.softmax(
        features @ mb101["roi_heads.box.predictor.cls_score.weight"].T
        + mb101["roi_heads.box.predictor.cls_score.bias"],
        dim=1,
    )
    ours = torch.softmax(
        features @ tv["roi_heads.box_predictor.cls_score.weight"].T + tv["roi_heads.box_predictor.cls_score.bias"],
        dim=1,
    )
    assert ours.shape == (5, 91)
    torch.testing.assert_close(ours[:, [0, *COCO_CATEGORY_IDS]], source, rtol=1e-6, atol=1e-7)
    gaps = sorted(set(range(91)) - {0, *COCO_CATEGORY_IDS})
    assert gaps == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83] and torch.all(ours[:, gaps] == 0)
    box = tv["roi_heads.box_predictor.bbox_pred.weight"].view(91, 4, 1024)
    torch.testing.assert_close(
        box[COCO_CATEGORY_IDS[5]], mb101["roi_heads.box.predictor.bbox_pred.weight"].view(81, 4, 1024)[6]
    )


def _mb_reference_layer2_0(sd, image_rgb01):
    """maskrcnn-benchmark's own computation, written out: BGR*255 - mean, FrozenBN without
    eps, stride in the 1x1 convs, up to the first block of layer2."""

    def frozen_bn(x, p):
        scale = sd[p + "weight"] * sd[p + "running_var"].rsqrt()
        bias = sd[p + "bias"] - sd[p + "running_mean"] * scale
        return x * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)

    def block(x, p, stride):
        identity = x
        if p + "downsample.0.weight" in sd:
            identity = frozen_bn(F.conv2d(x, sd[p + "downsample.0.weight"], stride=stride), p + "downsample.1.")
        out = F.relu(frozen_bn(F.conv2d(x, sd[p + "conv1.weight"], stride=stride), p + "bn1."))
        out = F.relu(frozen_bn(F.conv2d(out, sd[p + "conv2.weight"], padding=1), p + "bn2."))
        out = frozen_bn(F.conv2d(out, sd[p + "conv3.weight"]), p + "bn3.")
        return F.relu(out + identity)

    x = image_rgb01.flip(0)[None] * 255.0 - torch.tensor(MB_MEAN_BGR).view(1, 3, 1, 1)
    x = F.relu(
        frozen_bn(F.conv2d(x, sd["backbone.body.stem.conv1.weight"], stride=2, padding=3), "backbone.body.stem.bn1.")
    )
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    for b in range(3):
        x = block(x, f"backbone.body.layer1.{b}.", 1)
    return block(x, "backbone.body.layer2.0.", 2)


def test_converted_backbone_reproduces_maskrcnn_benchmark(mb101, converted_mb101):
    model = converted_mb101[3]
    assert model.backbone.body.layer2[0].conv1.stride == (2, 2) and model.backbone.body.layer2[0].conv2.stride == (1, 1)
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3))
    expected = _mb_reference_layer2_0(mb101, image)
    body = model.backbone.body
    with torch.no_grad():
        x = model.transform([image])[0].tensors
        x = body.maxpool(body.relu(body.bn1(body.conv1(x))))
        ours = body.layer2[0](body.layer1(x))
    scale = float(expected.abs().max())
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5 * scale)
    # Without the stride convention the network differs: the test can fail.
    torchvision_style = build_model("resnet101", canvas=(64, 64))
    load_state_dict_strict(torchvision_style, converted_mb101[0], "synthetic mb")
    with torch.no_grad():
        other = torchvision_style.backbone.body.layer2[0](torchvision_style.backbone.body.layer1(x))
    assert not torch.allclose(other, expected, rtol=1e-2, atol=1e-2 * scale)


def test_detectron2_pickle_converts_loads_and_round_trips(tmp_path):
    d2 = synthetic_resnet_fpn("resnet50", "d2", seed=1)
    src = tmp_path / "model_final.pkl"
    with src.open("wb") as fh:
        pickle.dump({"model": {k: v.numpy() for k, v in d2.items()}, "__author__": "synthetic"}, fh)
    dst = convert_checkpoint(src, tmp_path / "converted.pt")
    with pytest.warns(UserWarning, match="detection post-processing follows torchvision"):
        model = build_model("resnet50", weights=dst, canvas=(64, 64))
    info = model.fovea_ray_info
    assert info["conventions"]["source"] == "detectron2" and info["conventions"]["frozen_bn_eps"] == 1e-5
    # pixel_std from the checkpoint's own buffers (BGR, 0-255) -> RGB in [0, 1].
    np.testing.assert_allclose(model.transform.image_std, [58.395 / 255, 57.12 / 255, 57.375 / 255], rtol=1e-6)
    raw = torch.load(dst, weights_only=True)
    assert weights_checksum(model) == weights_checksum(raw["model"])
    back = to_source_state_dict(raw["model"], raw["fovea_ray"]["conventions"], raw["fovea_ray"]["source_extras"])
    assert set(back) == set(d2) and all(torch.equal(back[k], d2[k]) for k in d2)
    # detectron2 puts background last; torchvision first.
    assert torch.equal(
        raw["model"]["roi_heads.box_predictor.cls_score.bias"][0], d2["roi_heads.box_predictor.cls_score.bias"][80]
    )
    assert torch.equal(
        raw["model"]["roi_heads.box_predictor.cls_score.bias"][1], d2["roi_heads.box_predictor.cls_score.bias"][0]
    )


def test_refusals(tmp_path, mb101):
    extra = OrderedDict(mb101)
    extra["backbone.body.layer1.0.conv2.conv_offset.weight"] = torch.zeros(1)
    with pytest.raises(InputError, match="does not know: backbone.body.layer1.0.conv2.conv_offset.weight"):
        convert_state_dict(extra)
    d2 = synthetic_resnet_fpn("resnet50", "d2")
    d2["roi_heads.box_predictor.bbox_pred.weight"] = d2["roi_heads.box_predictor.bbox_pred.weight"][:4]
    d2["roi_heads.box_predictor.bbox_pred.bias"] = d2["roi_heads.box_predictor.bbox_pred.bias"][:4]
    with pytest.raises(InputError, match="class-agnostic box regression"):
        convert_state_dict(d2)
    with pytest.raises(InputError, match="already has torchvision names"):
        convert_state_dict({"backbone.body.conv1.weight": torch.zeros(1)})
    unsafe = tmp_path / "unsafe.pkl"
    with unsafe.open("wb") as fh:
        pickle.dump({"model": {"w": np.zeros(2)}, "x": Payload()}, fh)
    with pytest.raises(FoveaRayError, match="pickled Python object.*Payload"):
        load_checkpoint(unsafe)


def test_command_line(tmp_path, capsys):
    src = tmp_path / "mb_r50.pth"
    torch.save({"model": synthetic_resnet_fpn("resnet50", "mb", seed=2), "iteration": 90000}, src)
    assert main([str(src), str(tmp_path / "out.pt")]) == 0
    assert "wrote" in capsys.readouterr().out
    converted = load_checkpoint(tmp_path / "out.pt")
    assert converted["roi_heads.box_predictor.cls_score.weight"].shape == (91, 1024)
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "missing.pth"), str(tmp_path / "x.pt")])
    assert info.value.code == 2 and "not found" in capsys.readouterr().err


def test_fovea_ray_convert_command(tmp_path):
    """`fovea-ray convert SRC DST` in the typer CLI; bad options are one-line errors."""
    from _helpers import run_cli

    from fovea_ray.cli import convert as cli_convert
    from fovea_ray.model import convert as model_convert

    assert cli_convert.SOURCES == model_convert.SOURCES and cli_convert.INPUT_FORMATS == model_convert._INPUT_FORMATS
    src = tmp_path / "mb_r50.pth"
    torch.save({"model": synthetic_resnet_fpn("resnet50", "mb", seed=3)}, src)
    code, text = run_cli(["convert", str(src), str(tmp_path / "out.pt"), "--source", "maskrcnn-benchmark"])
    assert code == 0 and "wrote" in text, text
    assert load_checkpoint(tmp_path / "out.pt")["roi_heads.box_predictor.cls_score.weight"].shape == (91, 1024)
    code, text = run_cli(["convert", str(src), str(tmp_path / "x.pt"), "--pixel-mean", "1,2"])
    assert code == 2 and "--pixel-mean: expected three" in text and "Traceback" not in text
    code, text = run_cli(["convert", str(src), str(tmp_path / "x.pt"), "--source", "caffe"])
    assert code == 2 and "--source: expected one of maskrcnn-benchmark, detectron2" in text
    assert not (tmp_path / "x.pt").exists()
