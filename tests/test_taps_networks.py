"""Taps on classifiers, ViTs, timm and user networks against an independent computation.

The reference for each network: its full feature maps from torchvision's
``create_feature_extractor`` (ResNet-50) or plain forward hooks (the others) on an input
resized with ``torchvision.transforms.v2.functional.resize`` and normalised by hand, then
numpy reductions in float64. Token maps (B, N, C) reduce over the patch tokens, the class
token left out. Random weights, the models' own input sizes (224 px), two images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2.functional import resize

from fovea_ray.model import build_model
from fovea_ray.taps import Tapper, capture, resolve_layers
from fovea_ray.taps.layers import tappable_layers

STATS = ("mean", "median", "max", "std")


@pytest.fixture(scope="module")
def canvases():
    g = torch.Generator().manual_seed(5)
    return torch.rand(2, 3, 96, 96, generator=g)


def model_input(net, images):
    spec = net.fovea_ray_info["input"]
    mode = InterpolationMode.BICUBIC if spec["interpolation"] == "bicubic" else InterpolationMode.BILINEAR
    x = resize(images, list(spec["size"]), interpolation=mode, antialias=True)
    mean = torch.tensor(spec["mean"])[:, None, None]
    std = torch.tensor(spec["std"])[:, None, None]
    return (x - mean) / std


def hooked_maps(net, x, layers):
    maps, handles = {}, []
    modules = dict(net.named_modules())
    for name in layers:
        handles.append(modules[name].register_forward_hook(lambda m, i, o, n=name: maps.__setitem__(n, o.detach())))
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return maps


def numpy_stats(fmap: np.ndarray, prefix_tokens: int) -> np.ndarray:
    """(B, C, S) from a (B, C, H, W), (B, N, C) or (B, C) map, in float64 (``prefix_tokens``
    leading tokens left out)."""
    fmap = fmap.astype(np.float64)
    if fmap.ndim == 4:
        rows = fmap.reshape(*fmap.shape[:2], -1)
    elif fmap.ndim == 3:
        rows = fmap[:, prefix_tokens:, :].transpose(0, 2, 1)
    else:
        rows = fmap[:, :, None]
    return np.stack([rows.mean(-1), np.median(rows, -1), rows.max(-1), rows.std(-1)], axis=-1)


def check(net, images, layers, reference_maps, prefix=None):
    """``prefix``: layer -> leading tokens to leave out (default: none)."""
    taps = capture(net, images, layers, STATS)
    assert list(taps) == resolve_layers(net, layers)
    for name, value in taps.items():
        expected = numpy_stats(reference_maps[name].numpy(), (prefix or {}).get(name, 0))
        assert value.shape == expected.shape, name
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5, atol=1e-5, err_msg=name)
    return taps


def test_resnet50_against_create_feature_extractor(canvases):
    net = build_model(model="resnet50", canvas=96)
    layers = ["layer1.0", "layer3.2", "layer4.2.bn3", "fc"]
    extractor = create_feature_extractor(net, {n: n for n in layers})
    with torch.no_grad():
        maps = extractor(model_input(net, canvases))
    taps = check(net, canvases, layers, maps)
    assert taps["layer3.2"].shape == (2, 1024, 4) and taps["fc"].shape == (2, 1000, 4)
    assert net.fovea_ray_info["default_layer"] == "layer3.2"


def test_convnext_tiny(canvases):
    net = build_model(model="convnext_tiny", canvas=96)
    layers = ["features.1.0", "features.5.4", "features.7.2"]
    taps = check(net, canvases, layers, hooked_maps(net, model_input(net, canvases), layers))
    assert taps["features.5.4"].shape == (2, 384, 4)
    assert net.fovea_ray_info["default_layer"] == "features.5.4"


def test_vit_b_16_tokens_leave_out_the_class_token(canvases):
    """Block 6's (B, 197, 768) output: statistics over the 196 patch tokens only."""
    net = build_model(model="vit_b_16", canvas=96)
    block = "encoder.layers.encoder_layer_5"
    assert net.fovea_ray_info["default_layer"] == block and net.fovea_ray_info["prefix_tokens"] == 1
    layers = [block, "conv_proj", "encoder.ln"]
    maps = hooked_maps(net, model_input(net, canvases), layers)
    assert maps[block].shape == (2, 197, 768)
    taps = check(net, canvases, layers, maps, prefix={block: 1, "encoder.ln": 1})
    # By hand: channel means over tokens 1..196 of block 6; the class token would change them.
    tokens = maps[block].numpy().astype(np.float64)
    np.testing.assert_allclose(taps[block][:, :, 0].numpy(), tokens[:, 1:, :].mean(1), rtol=1e-5, atol=1e-5)
    assert np.abs(taps[block][:, :, 0].numpy() - tokens.mean(1)).max() > 1e-4


def test_two_layer_user_factory(canvases):
    net = build_model(model="fovea_ray.model.examples:two_layer_cnn", canvas=96)
    layers = ["conv1", "act2", "head"]
    taps = check(net, canvases, layers, hooked_maps(net, model_input(net, canvases), layers))
    assert taps["act2"].shape == (2, 32, 4) and net.fovea_ray_info["default_layer"] == "act2"


def test_timm_vit_when_installed(canvases):
    pytest.importorskip("timm")
    net = build_model(model="timm:vit_tiny_patch16_224", canvas=96)
    layers = ["blocks.5", "patch_embed"]
    maps = hooked_maps(net, model_input(net, canvases), layers)
    assert maps["blocks.5"].shape == (2, 197, 192) and maps["patch_embed"].shape == (2, 196, 192)
    check(net, canvases, layers, maps, prefix={"blocks.5": 1})  # patch_embed has no class token yet


def test_backbone_only_stops_after_the_deepest_tap_and_full_forward_gives_confidence(canvases):
    net = build_model(model="fovea_ray.model.examples:two_layer_cnn", canvas=96)
    ran = []
    handle = net.head.register_forward_hook(lambda *a: ran.append(1))
    with Tapper(net, ["conv1"], STATS, backbone_only=True) as tapper:
        out = tapper(canvases)
    assert ran == [] and out.confidence is None
    with Tapper(net, ["conv1"], STATS) as tapper:
        out = tapper(canvases)
    handle.remove()
    with torch.no_grad():
        probs = net(model_input(net, canvases)).softmax(1).max(1).values
    assert ran == [1]
    torch.testing.assert_close(out.confidence, probs)


def test_tappable_layers_and_a_pattern_that_matches_nothing(canvases):
    net = build_model(model="vit_b_16", canvas=96)
    found = dict(tappable_layers(net, canvases))
    assert found["encoder.layers.encoder_layer_5"] == (197, 768) and found["conv_proj"] == (768, 14, 14)
    assert "encoder.layers.encoder_layer_0.self_attention" not in found  # returns a tuple
    names = [n for n, _ in net.named_modules() if n in found]
    assert list(found) == names  # depth order
    with pytest.raises(ValueError, match=r"matches no module.*its layers: conv_proj, encoder, .*encoder.layers"):
        resolve_layers(net, "encoder.layer.*")


@pytest.mark.parametrize("n", [49, 196, 1000, 1001, 3136])
def test_zero_median_fast_path_is_exact(n):
    """Post-ReLU rows (about half zeros): medians equal numpy's, NaN rows stay NaN."""
    from fovea_ray.taps.reductions import median_rows

    rng = np.random.default_rng(n)
    x = rng.standard_normal((200, n)).astype(np.float32) + rng.uniform(-0.3, 0.3, (200, 1)).astype(np.float32)
    x = np.maximum(x, 0)
    x[::7] -= 0.01  # rows with negative values too
    x[5, 3], x[6], x[7, : n // 2 + 1] = np.nan, 0.0, 0.0
    got = median_rows(torch.from_numpy(x)).numpy()
    assert np.array_equal(got, np.median(x, axis=1).astype(np.float32), equal_nan=True)
    assert np.isnan(got[5]) and got[6] == 0 and got[7] == 0 and (got == 0).mean() > 0.2
