"""The layer sweep and `fovea-ray test` on a real (small) Zarr store."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fovea_ray.cluster import Execution
from fovea_ray.errors import InputError
from fovea_ray.stats.battery import BatteryConfig
from fovea_ray.stats.results import read_results, validate_results
from fovea_ray.stats.sweep import CONTROLS, run_store_tests
from fovea_ray.store import create_store

N, K = 200, 16
MAIN = "backbone.body.layer3.22.bn3"
EARLY = "backbone.body.layer1.0.bn3"
LAYERS = {EARLY: (6, ["mean", "median", "max"]), MAIN: (10, ["mean", "median", "max"])}
CONTROL_STATS = ["mean", "median", "max", "hf_energy"]
ERRORS = {5, 40, 77}  # unreadable samples: done, with an error and NaN values


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """200 samples (alternating types, 4 categories); the last chunk never written (not done)."""
    rng = np.random.default_rng(0)
    label = (np.arange(N) % 2).astype(np.int8)
    samples = pd.DataFrame(
        {
            "sample": np.arange(N),
            "image_id": np.arange(N) + 1000,
            "ann_id": np.arange(N) + 5000,
            "category_id": np.repeat([1, 3, 18, 62], N // 4),
            "label": label,
            "fixation_xy": [[320.0, 320.0]] * N,
            "eccentricity_deg": np.where(label == 1, 0.5, 10.0),
        }
    )
    path = tmp_path_factory.mktemp("stats_store") / "store.zarr"
    st = create_store(
        path,
        n_samples=N,
        layers=LAYERS,
        control_stats=CONTROL_STATS,
        chunk_size=K,
        samples=samples,
        attrs={"config": {"arch": "resnet101"}, "weights_checksum": "abc", "status": "complete"},
    )
    for i in range(st.n_chunks - 1):
        a, b = st.plan.bounds(i)
        lab = label[a:b]
        contrast = rng.gamma(4.0, 0.25, size=(b - a, 1, 1))
        acts = {}
        for name, (c, _stats) in LAYERS.items():
            v = rng.gamma(2.0, 1.0, size=(b - a, c, 3)) * contrast
            if name == MAIN:
                v[lab == 1, :3, 2] += 1.5  # the max of channels 0-2 prefers type 1
                v[lab == 0, 3, 0] += 1.0  # the mean of channel 3 prefers type 0
            acts[name] = v.astype(np.float32)
        err = ["" if j not in ERRORS else "unreadable image" for j in range(a, b)]
        for j in range(a, b):
            if j in ERRORS:
                for name in acts:
                    acts[name][j - a] = np.nan
        st.write_chunk(
            i,
            activations=acts,
            controls=rng.uniform(size=(b - a, 3, 4)).astype(np.float32),
            anchor_score=rng.uniform(size=b - a).astype(np.float32),
            error=err,
        )
    return str(path)


def test_sweep_on_ray(ray_session, store_path):
    cfg = BatteryConfig(alpha=0.05, permutations=39, full_permutations=19, mmd_permutations=49, odds_permutations=99)
    doc = run_store_tests(store_path, all_layers=True, stats=["mean", "max"], config=cfg, execution=Execution())
    validate_results(doc)
    used = N - (N - (N // K) * K) - len(ERRORS)  # the unwritten last chunk and the errors are left out
    assert doc["samples"]["n_used"] == used and doc["samples"]["n_error"] == len(ERRORS)
    assert doc["samples"]["n_not_done"] == N - (N // K) * K
    assert sum(doc["samples"]["per_type"].values()) == used
    assert {c["category_id"] for c in doc["samples"]["per_category"]} == {1, 3, 18, 62}
    assert list(doc["layers"]) == [EARLY, MAIN, CONTROLS] and doc["main_layer"] == MAIN
    assert [r["layer"] for r in doc["table"]] == [EARLY, MAIN, CONTROLS]
    main = doc["layers"][MAIN]
    assert main["d"] == 20 and main["stat_names"] == ["mean", "max"] and main["n"] == used
    c = main["c2st"]
    assert c["reject_asymptotic"] and c["accuracy"] > 0.7 and c["accuracy_ci"][0] < c["accuracy"] < c["accuracy_ci"][1]
    assert sum(map(sum, c["confusion"])) == c["n_test"]
    assert len(c["half_permutation"]["null_accuracies"]) == 39
    full = c["full_permutation"]
    assert full["p"] == pytest.approx(1 / 20) and len(full["null_accuracies"]) == 19 and full["backend"] == "ray"
    # Figure data of the main layer.
    coef = main["figures"]["coefficients"]
    assert coef["stat_names"] == ["mean", "max"] and np.shape(coef["coef"]) == (2, 10)
    top = main["figures"]["top_features"]
    assert len(top["features"]) == 9 and len(top["test_labels"]) == c["n_test"]
    assert top["features"][0]["stat"] == "max" and top["features"][0]["channel"] in (0, 1, 2)
    assert all(len(f["test_values"]) == c["n_test"] for f in top["features"])
    assert len(main["scores"]["score"]) == c["n_test"]
    sel = main["selectivity"]
    assert sel["per_stat"]["max"]["n_prefer_type1"] >= 3 and sel["per_stat"]["mean"]["n_prefer_type0"] >= 1
    assert np.shape(sel["channels"]["auc"]) == (10, 2)
    names = {t["name"] for t in main["tests"]}
    assert names == {
        "kim_asymptotic",
        "kim_half_permutation",
        "full_permutation",
        "friedman_mann_whitney",
        "friedman_kolmogorov_smirnov",
        "dagostino_pearson_normality",
        "cai_odds_ratio",
        "mmd",
    }
    assert not any(t["skipped"] for t in main["tests"])
    # Other layers: no figure data, no full permutation; the pixel control runs on its own stats.
    early = doc["layers"][EARLY]
    assert "figures" not in early and "full_permutation" not in early["c2st"]
    assert early["c2st"]["half_permutation"]["null_accuracies"] is None
    assert doc["layers"][CONTROLS]["kind"] == "control" and doc["layers"][CONTROLS]["d"] == 9  # mean, max, hf_energy
    assert len(doc["tests"]) == 3 * 8
    json.dumps(doc, allow_nan=False)


def test_small_store_records_skips_instead_of_failing(store_path):
    cfg = BatteryConfig(alpha=0.05, permutations=19, test_size=0.05, mmd_permutations=19)
    doc = run_store_tests(store_path, stats=["mean", "max"], config=cfg, include_controls=False)
    main = doc["layers"][MAIN]
    skipped = {t["name"] for t in main["tests"] if t["skipped"]}
    assert "kim_asymptotic" in skipped and "mmd" not in skipped
    assert main["c2st"] is None and main["selectivity"] is not None
    assert doc["table"][0]["accuracy"] is None


def test_bad_requests_name_the_problem(store_path, tmp_path):
    with pytest.raises(InputError, match="no layer"):
        run_store_tests(store_path, layers=["backbone.nope"], config=BatteryConfig())
    with pytest.raises(InputError, match="not \\['std'\\]"):
        run_store_tests(store_path, stats=["mean", "STD"], config=BatteryConfig())
    with pytest.raises(InputError, match="--stats: unknown statistic 'p99'"):
        run_store_tests(store_path, stats=["mean", "p99"], config=BatteryConfig())
    with pytest.raises(InputError, match="not a fovea-ray results"):
        (tmp_path / "r.json").write_text("{}")
        read_results(tmp_path / "r.json")


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from fovea_ray.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_writes_results(store_path, tmp_path):
    out = tmp_path / "results.json"
    r = _cli(
        "test",
        store_path,
        "--out",
        str(out),
        "--stats",
        "MEAN,max",
        "--layers",
        EARLY,
        "--permutations",
        "19",
        "--full-permutations",
        "9",
        "--mmd-permutations",
        "19",
        "--alpha",
        "0.05",
        "--local",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and MAIN in r.stdout
    doc = read_results(out)
    assert doc["config"]["seed"] == 0 and doc["config"]["full_permutations"] == 9
    assert doc["layers"][MAIN]["c2st"]["full_permutation"]["backend"] == "local"
    # --stats canonicalised once, for every row (the pixel baseline keeps its hf_energy); --layers honoured
    assert doc["config"]["stats"] == ["mean", "max"] and doc["config"]["layers"] == [MAIN, EARLY, CONTROLS]
    assert doc["layers"][EARLY]["stat_names"] == ["mean", "max"]
    assert doc["layers"][CONTROLS]["stat_names"] == ["mean", "max", "hf_energy"]
    assert doc["versions"]["sklearn"] and doc["store"]["weights_checksum"] == "abc"
    bad = _cli("test", str(tmp_path / "missing.zarr"), "--out", str(out), "--local")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("fovea-ray: error:") and "missing.zarr" in bad.stderr.splitlines()[0]
