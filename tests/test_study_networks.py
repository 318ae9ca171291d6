"""Networks side by side: ``fovea-ray run`` with two networks, ``test --store``, bad input.

Two random initialisations of a small classifier (resnet18, random weights) on the
synthetic mini-COCO: one manifest, one store each with the same sample table, one
held-out split, and a comparison at every shared layer that an independent computation
from the stores reproduces.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from _helpers import run_cli

from fovea_ray.errors import InputError
from fovea_ray.study.config import load_config
from fovea_ray.study.networks import study_networks
from fovea_ray.study.run import run_study

TWO = """
seed = 2
[data]
synthetic_images = 72
synthetic_size = 256
[prepare]
canvas = 128
[extract]
stats = ["mean", "max"]
batch_size = 4
chunk_size = 4
[test]
permutations = 20
full_permutations = 0
stats = ["mean", "max"]

[[networks]]
name = "seed-a"
model = "resnet18"
weights = "none"

[[networks]]
name = "seed-b"
model = "resnet18"
weights = "none"
"""


@pytest.fixture(scope="module")
def two_run(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("two")
    (root / "two.toml").write_text(TWO)
    cfg = load_config(root / "two.toml", {"out": str(root / "out")})
    return cfg, run_study(cfg)


def test_one_store_per_network_with_identical_sample_tables(two_run):
    from fovea_ray.store import open_store

    _, out = two_run
    a, b = open_store(out / "stores" / "seed-a.zarr"), open_store(out / "stores" / "seed-b.zarr")
    pd.testing.assert_frame_equal(a.samples, b.samples)
    assert a.attrs["config"]["manifest_checksum"] == b.attrs["config"]["manifest_checksum"]
    # Two initialisations: different seeds, so different weights.
    assert a.attrs["config"]["seed"] != b.attrs["config"]["seed"]
    assert a.attrs["weights_checksum"] != b.attrs["weights_checksum"]


def test_results_hold_networks_and_a_comparison_at_every_shared_layer(two_run):
    _, out = two_run
    doc = json.loads((out / "results.json").read_text())
    assert [n["name"] for n in doc["networks"]] == ["seed-a", "seed-b"]
    layers = [r["layer"] for r in doc["table"] if r["kind"] == "layer"]
    rows = doc["comparisons"]
    assert [r["layer"] for r in rows] == layers  # every shared layer, in depth order
    n_test = len(doc["split"]["sample"])
    for r in rows:
        assert r["network_a"] == "seed-a" and r["network_b"] == "seed-b"
        assert r["both_correct"] + r["only_a_correct"] + r["only_b_correct"] + r["neither_correct"] == n_test
        assert r["ci_low"] <= r["accuracy_difference"] <= r["ci_high"]
        assert r["pvalue"] <= r["pvalue_holm"] <= 1
    (summary,) = doc["comparison_summary"]
    assert summary["n_layers"] == len(layers)
    # Each network's table is the same layers on the same samples.
    for net in doc["networks"]:
        assert [r["layer"] for r in net["table"]] == layers
        assert {r["n"] for r in net["table"]} == {doc["samples"]["n_used"]}


def test_a_comparison_row_equals_an_independent_computation(two_run):
    """From the stores alone: the same split, each network's classifier, the paired test."""
    from statsmodels.stats.contingency_tables import mcnemar

    from fovea_ray.stats.c2st import classifier_two_sample_test
    from fovea_ray.store import open_store

    cfg, out = two_run
    doc = json.loads((out / "results.json").read_text())
    row = doc["comparisons"][len(doc["comparisons"]) // 2]
    preds, y_test = [], None
    for name in ("seed-a", "seed-b"):
        store = open_store(out / "stores" / f"{name}.zarr")
        good = store.good()
        X = store.activations(row["layer"], stats=["mean", "max"])[good]
        y = store.samples["label"].to_numpy()[good]
        channels = X.shape[1]
        X = np.concatenate([X[:, :, 0], X[:, :, 1]], axis=1)  # stat-major, as the battery flattens
        groups = np.tile(np.arange(channels), 2)  # the standardized classifier scales per channel
        res = classifier_two_sample_test(
            X, y, test_size=0.5, seed=cfg.seed, n_permutations=0, permutation="none", groups=groups
        )
        ids = store.samples["sample"].to_numpy()[good][res.fit.test_index]
        assert ids.tolist() == doc["split"]["sample"]
        y_test = res.fit.y_test
        preds.append(res.y_pred)
    right_a, right_b = preds[0] == y_test, preds[1] == y_test
    assert row["accuracy_a"] == pytest.approx(right_a.mean()) and row["accuracy_b"] == pytest.approx(right_b.mean())
    assert row["only_a_correct"] == int((right_a & ~right_b).sum())
    table = [
        [int((right_a & right_b).sum()), int((right_a & ~right_b).sum())],
        [int((~right_a & right_b).sum()), int((~right_a & ~right_b).sum())],
    ]
    assert row["pvalue"] == pytest.approx(mcnemar(table, exact=True).pvalue)


def test_report_leads_with_the_answer(two_run):
    _, out = two_run
    doc = json.loads((out / "results.json").read_text())
    html = (out / "report.html").read_text()
    assert html.index("The answer") < html.index("Networks side by side") < html.index("Summary")
    if doc["comparison_summary"][0]["different"]:
        assert "seed-a differs from seed-b" in html
    else:
        assert "seed-a and seed-b are called different at no layer" in html
        assert "no difference is expected" in html
    for name in ("networks_layers", "difference_0"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    cats = doc["samples"]["per_category"]
    assert cats and all(c["category_name"] for c in cats)
    for c in cats:  # names, not bare ids, in the table
        assert f'<td class="l">{c["category_name"]} ({c["category_id"]})</td>' in html


def test_test_command_compares_written_stores_the_same_way(two_run, tmp_path):
    _, out = two_run
    code, text = run_cli(
        [
            "test",
            "--store",
            f"seed-a={out / 'stores' / 'seed-a.zarr'}",
            "--store",
            f"seed-b={out / 'stores' / 'seed-b.zarr'}",
            "--all-layers",
            "--stats",
            "mean,max",
            "--permutations",
            "20",
            "--seed",
            "2",
            "--local",
            "--no-progress",
            "--out",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0, text
    assert "answer: seed-a and seed-b are called different" in text or "answer: seed-a differs from seed-b" in text
    # P = 20 cannot reach BH's alpha/m across 8 layers: the answer says so instead of "none".
    assert "cannot be decided with P = 20" in text and "needs P ≥ 799" in text
    assert "at none of its" not in text
    mine = json.loads((tmp_path / "r.json").read_text())
    theirs = json.loads((out / "results.json").read_text())
    assert mine["comparisons"] == theirs["comparisons"]


def test_stores_from_different_manifests_are_refused(two_run, tmp_path):
    import zarr

    _, out = two_run
    other = tmp_path / "other.zarr"
    shutil.copytree(out / "stores" / "seed-b.zarr", other)
    root = zarr.open_group(str(other), mode="r+", use_consolidated=False)
    config = dict(root.attrs["config"], manifest_checksum="0" * 64)
    root.attrs["config"] = config
    code, text = run_cli(
        [
            "test",
            "--store",
            f"a={out / 'stores' / 'seed-a.zarr'}",
            "--store",
            f"b={other}",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2 and "made from another manifest" in text and str(other) in text, text
    assert len(text.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--network", "a=none", "--network", "a=none"], "'a' is used twice"),
        (["--network", "a/b=none"], "bad network name 'a/b'"),
        (["--network", "t=/no/such/checkpoint.pt"], "checkpoint not found"),
        (["--network", "t=none", "--control", "u"], "--control 'u' names no network"),
    ],
)
def test_bad_networks_are_one_line_before_any_work(tmp_path, args, message):
    out = tmp_path / "out"
    code, text = run_cli(["run", "--out", str(out), *args])
    assert code == 2 and message in text, text
    assert len(text.strip().splitlines()) == 1
    assert not (out / "stores").exists() and not (out / "manifest.parquet").exists()


def test_network_resolution(tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"not loaded here")
    # One network with learnt weights: the random-weight control of its architecture is added.
    cfg = load_config(None, {"extract": {"arch": "resnet50", "weights": str(ckpt)}})
    nets = study_networks(cfg)
    assert [(n.name, n.control, n.random) for n in nets] == [("trained", False, False), ("random", True, True)]
    assert nets[1].model.name == nets[0].model.name == "maskrcnn_resnet50_fpn"
    cfg.random_control = False
    assert [n.name for n in study_networks(cfg)] == ["trained"]
    # Random networks each get their own seed; an explicit one is kept.
    cfg = load_config(None, {"seed": 5, "networks": ["a=none", "b=resnet18@none"]})
    nets = study_networks(cfg, controls=("b",))
    assert [(n.name, n.seed, n.control, n.model.name) for n in nets] == [
        ("a", 5, False, "maskrcnn_resnet101_fpn"),
        ("b", 6, True, "resnet18"),
    ]
    # The TOML array round-trips through the saved run.toml.
    cfg = load_config(None, {"networks": [{"name": "x", "weights": "none", "seed": 9, "control": True}]})
    saved = load_config(cfg.save(tmp_path / "run.toml"))
    assert saved.networks == cfg.networks and study_networks(saved)[0].seed == 9
    bad = tmp_path / "bad.toml"
    bad.write_text('[[networks]]\nname = "x"\nweight = "none"\n')
    with pytest.raises(InputError, match="unknown key 'weight'"):
        study_networks(load_config(bad))


def test_coco128_two_networks(coco128_dir, tmp_path, ray_session):
    """Real COCO images: the run completes and both stores hold the same sample table."""
    from fovea_ray.store import open_store

    cfg = load_config(
        None,
        {
            "out": str(tmp_path / "out"),
            "data": {
                "annotations": str(coco128_dir / "annotations" / "instances_train2017.json"),
                "images": str(coco128_dir / "train2017"),
            },
            "prepare": {"n_per_type": 20, "canvas": 160},
            "extract": {"stats": ["mean", "max"], "chunk_size": 6},
            "test": {"permutations": 20, "full_permutations": 0, "stats": ["mean", "max"]},
            "networks": ["rand-a=resnet18@none", "rand-b=resnet18@none"],
        },
    )
    out = run_study(cfg)
    a, b = open_store(out / "stores" / "rand-a.zarr"), open_store(out / "stores" / "rand-b.zarr")
    pd.testing.assert_frame_equal(a.samples, b.samples)
    assert a.good().sum() > 0
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["comparisons"]) == len([r for r in doc["table"] if r["kind"] == "layer"])
    assert all(c["category_name"] for c in doc["samples"]["per_category"])


def test_results_schema_checks_the_network_parts(two_run):
    from fovea_ray.stats.results import validate_results

    _, out = two_run
    doc = json.loads((out / "results.json").read_text())
    validate_results(doc)
    bad = json.loads(json.dumps(doc))
    bad["comparisons"][0]["network_b"] = "nobody"
    with pytest.raises(InputError, match="unknown networks"):
        validate_results(bad, source="r.json")
    bad = json.loads(json.dumps(doc))
    del bad["networks"][0]["role"]
    with pytest.raises(InputError, match="lacks 'role'"):
        validate_results(bad, source="r.json")
    bad = json.loads(json.dumps(doc))
    bad["split"]["label"] = bad["split"]["label"][:-1]
    with pytest.raises(InputError, match="not as many labels"):
        validate_results(bad, source="r.json")
