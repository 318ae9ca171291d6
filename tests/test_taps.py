"""fovea_ray.taps on a real (random-weight) ResNet-101 FPN Mask R-CNN.

The independent reference: torchvision's ``create_feature_extractor`` on the backbone
body, fed a batch normalised and zero-padded by hand, then numpy reductions over each
image's valid region (cropped with the layer's known stride).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor

from fovea_ray.model import build_model
from fovea_ray.taps import Tapper, capture, resolve_layers

BN3 = "backbone.body.layer3.22.bn3"
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


@pytest.fixture(scope="module")
def model():
    net = build_model("resnet101", canvas=(128, 160), seed=0)
    # torchvision's initialisation doubles the activation variance in every residual block
    # (layer3 reaches ~1e4) and the random RPN then proposes nothing. A small last-BN scale
    # per block (as in Goyal et al. 2017's residual init, but non-zero) keeps maps O(1), so
    # the heads compute real proposals and detections for the output checks.
    with torch.no_grad():
        for name, module in net.named_modules():
            if name.endswith(".bn3"):
                module.weight.fill_(0.2)
    net.roi_heads.score_thresh = 0.0  # random scores are ~1/91: keep them to compare
    net.roi_heads.detections_per_img = 20
    # Fewer proposals keep full-model passes fast on the CPU; the taps do not depend on them.
    net.rpn._pre_nms_top_n["testing"] = 200
    net.rpn._post_nms_top_n["testing"] = 100
    return net


@pytest.fixture(scope="module")
def mixed_images():
    # Differently sized; the second is padded (by 28 rows and 70 columns) in the batch.
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 128, 160, generator=g), torch.rand(3, 100, 90, generator=g)]


@pytest.fixture(scope="module")
def same_pad_images():
    # Differently sized, but each alone pads to the same 128 x 160 as the batch does, so
    # per-image passes see exactly the batched input and must give the same statistics.
    g = torch.Generator().manual_seed(2)
    return [torch.rand(3, 128, 160, generator=g), torch.rand(3, 100, 150, generator=g)]


def reference_stats(model, images, body_layers_with_stride):
    """Independent per-image mean/median/max via create_feature_extractor + numpy."""
    height = math.ceil(max(im.shape[1] for im in images) / 32) * 32
    width = math.ceil(max(im.shape[2] for im in images) / 32) * 32
    batch = torch.zeros(len(images), 3, height, width)
    for i, im in enumerate(images):
        batch[i, :, : im.shape[1], : im.shape[2]] = (im - MEAN) / STD
    extractor = create_feature_extractor(model.backbone.body, {name: name for name in body_layers_with_stride})
    with torch.no_grad():
        features = extractor(batch)
    out = {}
    for name, stride in body_layers_with_stride.items():
        fmap = features[name].numpy().astype(np.float64)
        per_image = []
        for i, im in enumerate(images):
            crop = fmap[i, :, : math.ceil(im.shape[1] / stride), : math.ceil(im.shape[2] / stride)]
            flat = crop.reshape(crop.shape[0], -1)
            per_image.append(np.stack([flat.mean(1), np.median(flat, axis=1), flat.max(1)], axis=1))
        out[name] = np.stack(per_image)
    return out


def assert_matches(ours: torch.Tensor, ref: np.ndarray, rtol: float = 1e-5) -> None:
    ours = ours.numpy()
    assert ours.shape == ref.shape
    # Relative agreement; the absolute floor (1e-5 of the layer's scale) covers means near zero.
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def test_bn3_matches_feature_extractor_and_numpy(model, mixed_images):
    ours = capture(
        model, mixed_images, [BN3, "backbone.body.layer1.2"], stats=("mean", "median", "max"), backbone_only=True
    )
    ref = reference_stats(model, mixed_images, {"layer3.22.bn3": 16, "layer1.2": 4})
    assert ours[BN3].shape == (2, 1024, 3)
    assert_matches(ours[BN3], ref["layer3.22.bn3"])
    assert_matches(ours["backbone.body.layer1.2"], ref["layer1.2"])


def test_padding_is_excluded(model, same_pad_images):
    layers = [BN3, "backbone.body.layer2.3"]
    stats = ("mean", "median", "min")
    maps = {}

    def keep(module, inputs, output):  # returns None, so the output is not replaced
        maps["x"] = output.clone()

    handle = dict(model.named_modules())[BN3].register_forward_hook(keep)
    try:
        batched = capture(model, same_pad_images, layers, stats=stats, backbone_only=True)
    finally:
        handle.remove()
    for i, image in enumerate(same_pad_images):
        alone = capture(model, [image], layers, stats=stats, backbone_only=True)
        for layer in layers:
            # Batch size changes the convolution kernels' rounding only (~1e-6 of the scale).
            scale = float(alone[layer].abs().max())
            torch.testing.assert_close(batched[layer][i], alone[layer][0], rtol=1e-5, atol=1e-5 * scale)
    # Over the whole (padded) map the second image's statistics differ: the test can fail.
    whole = maps["x"][1].mean(dim=(1, 2))
    valid = maps["x"][1, :, : math.ceil(100 / 16), : math.ceil(150 / 16)].mean(dim=(1, 2))
    torch.testing.assert_close(batched[BN3][1, :, 0], valid, rtol=1e-5, atol=1e-5 * float(valid.abs().max()))
    assert float((whole - valid).norm() / valid.norm()) > 1e-2


def test_all_bottlenecks_in_one_pass_equal_single_passes_and_backbone_only(model, mixed_images):
    layers = resolve_layers(model, "backbone.body.layer*.*")
    assert len(layers) == 33 and layers[0] == "backbone.body.layer1.0" and layers[-1] == "backbone.body.layer4.2"
    with Tapper(model, layers, ("mean", "median", "max", "std", "topk_mean@0.1", "frac_pos")) as tapper:
        full = tapper(mixed_images)
    assert full.layers == layers and full.detections is not None and len(full.detections) == 2
    with Tapper(model, layers, full.stats, backbone_only=True) as tapper:
        body = tapper(mixed_images)
    assert body.detections is None
    for layer in layers:
        assert full.taps[layer].shape == (2, dict(model.named_modules())[layer].conv3.out_channels, 6)
        assert full.taps[layer].device.type == "cpu"
        torch.testing.assert_close(body.taps[layer], full.taps[layer], rtol=0, atol=0)
    for layer in (layers[0], layers[9]):
        single = capture(model, mixed_images, [layer], stats=full.stats, backbone_only=True)[layer]
        torch.testing.assert_close(single, full.taps[layer], rtol=0, atol=0)


def test_backbone_only_stops_after_the_deepest_tap(model, mixed_images):
    ran = []
    modules = dict(model.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda m, i, o, n=n: ran.append(n))
        for n in ("backbone.body.layer3", "backbone.body.layer4", "backbone.fpn")
    ]
    try:
        capture(model, mixed_images, ["backbone.body.layer2.0", "backbone.body.layer3.1"], backbone_only=True)
    finally:
        for h in handles:
            h.remove()
    assert ran == []  # stopped inside layer3, before layer3 itself returned


def test_tapping_does_not_change_outputs(model, mixed_images):
    # Compare the detections and what the heads compute on the way: RPN proposals and
    # the box predictor's class logits and box deltas.
    seen: list[dict[str, object]] = []

    def tensors(obj):
        if isinstance(obj, torch.Tensor):
            return [obj.clone()]
        if isinstance(obj, (tuple, list)):
            return [t for item in obj for t in tensors(item)]
        return []

    def observe(name):
        def hook(module, inputs, output):  # returns None: observes only
            seen[-1][name] = tensors(output)

        return hook

    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(observe(n)) for n in ("rpn", "roi_heads.box_predictor")]
    try:
        seen.append({})
        with torch.no_grad():
            before = model(mixed_images)
        with Tapper(model, ["backbone.body.layer*.*", "backbone.fpn.layer_blocks.*"], ("mean", "median")) as tapper:
            seen.append({})
            tapped = tapper(mixed_images)
            seen.append({})
            with torch.no_grad():
                during = model(mixed_images)  # hooks registered but inactive
    finally:
        for handle in handles:
            handle.remove()
    assert len(tapped.layers) == 33 + 4 and all(v.shape[0] == 2 for v in tapped.taps.values())
    for b, t, d in zip(before, tapped.detections, during):
        for key in ("boxes", "labels", "scores"):
            assert torch.equal(b[key], t[key]) and torch.equal(b[key], d[key])
        assert "masks" in b and "masks" not in t  # the tapped pass skips masks by default
    proposals = seen[0]["rpn"]
    assert len(proposals) == 2 and proposals[0].shape[0] > 0  # one (n, 4) tensor per image
    assert len(before[0]["boxes"]) > 0
    for run in seen[1:]:
        for name in ("rpn", "roi_heads.box_predictor"):
            assert len(run[name]) == len(seen[0][name])
            assert all(torch.equal(a, b) for a, b in zip(seen[0][name], run[name]))


def test_shared_and_unsuitable_modules_are_refused(model):
    tiny = [torch.rand(3, 64, 64)]
    with pytest.raises(ValueError, match="ran more than once"):
        capture(model, tiny, ["backbone.body.layer1.0.relu"])
    with pytest.raises(ValueError, match="ran more than once"):
        capture(model, tiny, ["backbone.body.layer1.0.relu"], backbone_only=True)
    with pytest.raises(ValueError, match="ran more than once"):
        capture(model, tiny, ["rpn.head.cls_logits"])  # once per FPN level
    with pytest.raises(ValueError, match="outputs a OrderedDict"):
        capture(model, tiny, ["backbone.fpn"], backbone_only=True)
    with pytest.raises(ValueError, match="outside model.backbone"):
        Tapper(model, ["roi_heads.box_head.fc7"], backbone_only=True)
    with pytest.raises(ValueError, match="did you mean backbone.body.layer3.22.bn3"):
        resolve_layers(model, ["backbone.body.layer3.22.bn33"])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        capture(model, [torch.rand(1, 32, 32)], [BN3])
