"""fovea_ray.names: one home for statistic names, the study layer and the defaults."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fovea_ray import names
from fovea_ray.store import create_store


def test_canonical_stats_spellings():
    assert names.canonical_stats("MEAN, Max topk_mean") == ["mean", "max", "topk_mean@0.1"]
    assert names.canonical_stats(["topk_mean@10", "hf_energy"]) == ["topk_mean@10", "hf_energy"]
    with pytest.raises(ValueError, match="unknown statistic 'hf_energy'"):
        names.parse_stats(["hf_energy"])  # not a tap statistic
    with pytest.raises(ValueError, match="listed twice: topk_mean@0.1"):
        names.canonical_stats(["topk_mean", "topk_mean@0.1"])


def test_one_home_for_each_name():
    import importlib

    from fovea_ray.stats import sweep
    from fovea_ray.study import config
    from fovea_ray.taps import reductions

    extract = importlib.import_module("fovea_ray.pipeline.extract")

    assert reductions.parse_stats is names.parse_stats and reductions.DEFAULT_STATS is names.DEFAULT_STATS
    assert sweep.STUDY_LAYER is names.STUDY_LAYER and config.STUDY_LAYER is names.STUDY_LAYER
    assert extract.DEFAULT_LAYERS is names.DEFAULT_LAYERS and extract.DEFAULT_STATS is names.DEFAULT_STATS
    assert config.ExtractConfig().stats == list(names.DEFAULT_STATS)


def test_names_module_is_torch_free():
    code = "import sys, fovea_ray.names, fovea_ray.stats.sweep; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_store_reads_any_spelling(tmp_path):
    n = 4
    samples = pd.DataFrame(
        {
            "sample": np.arange(n),
            "image_id": np.arange(n),
            "ann_id": np.arange(n),
            "category_id": [1] * n,
            "label": np.array([0, 1, 0, 1], dtype=np.int8),
            "fixation_xy": [[1.0, 1.0]] * n,
            "eccentricity_deg": [0.0] * n,
        }
    )
    layer = "backbone.body.layer1.0"
    st = create_store(
        tmp_path / "s.zarr",
        n_samples=n,
        layers={layer: (2, ["mean", "topk_mean@0.1"])},
        control_stats=["mean", "hf_energy"],
        chunk_size=n,
        samples=samples,
        attrs={"status": "complete"},
    )
    values = np.arange(n * 2 * 2, dtype=np.float32).reshape(n, 2, 2)
    st.write_chunk(
        0,
        activations={layer: values},
        controls=np.zeros((n, 3, 2), np.float32),
        anchor_score=np.zeros(n, np.float32),
        error=[""] * n,
    )
    np.testing.assert_array_equal(st.activations(layer, stats=["TOPK_MEAN", "Mean"]), values[:, :, ::-1])
    with pytest.raises(KeyError, match="unknown statistic 'average'"):
        st.activations(layer, stats=["average"])
