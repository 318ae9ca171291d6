"""Extraction and the test battery for networks other than the study's detector.

Per network (random weights, the synthetic mini-COCO, 6 samples on a 96 px canvas that the
classifier resizes to its 224 px input): the store holds the in-process tapped forward,
opens in xarray, has NaN anchor scores, and ``fovea-ray test --all-layers`` runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _helpers import run_cli as _cli
from test_extract import PPD, make_manifest

from fovea_ray.store import open_store

CANVAS = 96
NETWORKS = {
    "resnet50": [":default", "layer4.2"],
    "convnext_tiny": [":default"],
    "vit_b_16": [":default", "encoder.ln"],
    "timm:vit_tiny_patch16_224": [":default"],
    "fovea_ray.model.examples:two_layer_cnn": [":blocks"],
}
DEFAULTS = {
    "resnet50": "layer3.2",
    "convnext_tiny": "features.5.4",
    "vit_b_16": "encoder.layers.encoder_layer_5",
    "timm:vit_tiny_patch16_224": "blocks.5",
    "fovea_ray.model.examples:two_layer_cnn": "act2",
}


@pytest.fixture(scope="module")
def manifest(synthetic_coco):
    df = make_manifest(synthetic_coco, 6)
    half = CANVAS // 2
    df["window_xywh"] = [[int(round(x)) - half, int(round(y)) - half, CANVAS, CANVAS] for x, y in df["fixation_xy"]]
    df["canvas"] = [[CANVAS, CANVAS]] * len(df)
    return df


def in_process(model: str, manifest, layers):
    import torch

    from fovea_ray.data.render import decode_image, render_batch
    from fovea_ray.foveation import Foveator
    from fovea_ray.model import build_model
    from fovea_ray.taps import capture

    net = build_model(model=model, canvas=CANVAS, seed=0)
    fov = Foveator(pixels_per_degree=PPD)
    rows = []
    for _, r in manifest.iterrows():
        img = decode_image(Path(r["image_uri"]).read_bytes())
        rows.append(render_batch([img], [r["fixation_xy"]], [r["window_xywh"]], (CANVAS, CANVAS), fov))
    with torch.inference_mode():
        taps = capture(net, torch.cat(rows), layers, ["mean", "max"])
    return {k: v.numpy() for k, v in taps.items()}


@pytest.mark.parametrize("model", list(NETWORKS))
def test_network_store_and_all_layer_tests(ray_session, manifest, tmp_path, model):
    if model.startswith("timm:"):
        pytest.importorskip("timm")
    from fovea_ray.pipeline import extract

    out = tmp_path / "store.zarr"
    summary = extract(
        manifest,
        out,
        model=model,
        layers=NETWORKS[model],
        stats=["mean", "max"],
        chunk_size=3,
        batch_size=3,
        progress=False,
    )
    assert summary.done == 6 and summary.failed == 0 and summary.complete
    st = open_store(out)
    default = DEFAULTS[model]
    assert default in st.layers and st.attrs["default_layer"] == default
    config = st.attrs["config"]
    assert config["model"] == model and "arch" not in config and config["input"]["size"] == [224, 224]
    assert np.isnan(st.samples["anchor_score"].to_numpy()).all()  # a classifier has no anchor detection
    ref = in_process(model, manifest, st.layers)
    for layer in st.layers:
        np.testing.assert_allclose(st.activations(layer), ref[layer], rtol=1e-4, atol=1e-4, err_msg=layer)
    ds = xr.open_zarr(out, group=f"activations/{default}")
    assert ds["values"].dims == ("sample", "channel", "stat") and ds["values"].shape[0] == 6

    results = tmp_path / "results.json"
    code, text = _cli(
        [
            "test",
            str(out),
            "--all-layers",
            "--permutations",
            "0",
            "--mmd-permutations",
            "0",
            "--local",
            "--no-progress",
            "--out",
            str(results),
        ]
    )
    assert code == 0, text
    doc = json.loads(results.read_text())
    assert doc["main_layer"] == default
    tested = [r["layer"] for r in doc["table"] if r["layer"] != "controls/pixels"]
    assert tested == st.layers  # the layer curve in the model's depth order


def test_bad_networks_are_one_line_errors(ray_session, manifest, tmp_path):
    from fovea_ray.data.manifest import write_manifest

    path = str(write_manifest(manifest, tmp_path / "m.parquet"))
    out = str(tmp_path / "s.zarr")
    cases = [
        (["--model", "resnt50"], "unknown model 'resnt50'; nearest: resnet50"),
        (["--model", "resnet18", "--layers", "layer9.*"], "its layers: conv1, bn1, relu, maxpool, layer1"),
        # The factory is built in Ray workers, which import installed modules (os, not tests/).
        (["--model", "os:getcwd"], "os:getcwd returned a str, not a torch nn.Module"),
        (["--model", "resnet18", "--arch", "resnet50"], "not both"),
    ]
    for extra, message in cases:
        code, text = _cli(["extract", path, "--out", out, "--no-progress", *extra])
        lines = [line for line in text.splitlines() if line.startswith("fovea-ray: error")]
        assert code == 2 and len(lines) == 1 and message in lines[0], text
        assert "Traceback" not in text
