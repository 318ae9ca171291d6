"""``fovea-ray run`` end to end on a tiny synthetic set: every output, resumable, reproducible."""

from __future__ import annotations

import json
import re

import pytest
import tomllib
from PIL import Image

from fovea_ray.study.config import load_config
from fovea_ray.study.run import run_study

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//|ftp:)""", re.I)

TINY = """
seed = 3
[data]
synthetic_images = 48
synthetic_size = 192
[prepare]
canvas = 128
pixels_per_degree = 30.0
ecc_band = [8.0, 12.0]
[extract]
arch = "resnet50"
layers = ["backbone.body.layer3.*", "backbone.body.layer3.5.bn3"]
stats = ["mean", "median", "max"]
batch_size = 4
chunk_size = 4
backbone_only = true
[test]
layer = "backbone.body.layer3.5.bn3"
permutations = 20
full_permutations = 10
full_layers = "all"
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("run")
    (root / "tiny.toml").write_text(TINY)
    cfg = load_config(root / "tiny.toml", {"out": str(root / "out")})
    out = run_study(cfg)
    return cfg, out


def test_every_output_exists(tiny_run):
    _, out = tiny_run
    for name in ("run.toml", "manifest.parquet", "stores/random.zarr", "results.json", "report.html", "figures"):
        assert (out / name).exists(), name
    pngs = list((out / "figures").glob("*.png"))
    assert {p.stem for p in pngs} >= {"coefficients", "confusion", "input_pairs", "layers", "selectivity"}
    for p in pngs:
        with Image.open(p) as im:
            im.verify()
    html = (out / "report.html").read_text()
    assert not EXTERNAL.search(html)
    assert "NOT A FINDING" in html  # the demo says plainly what it is


def test_results_have_the_documented_keys(tiny_run):
    _, out = tiny_run
    doc = json.loads((out / "results.json").read_text())
    for key in (
        "schema",
        "schema_version",
        "config",
        "versions",
        "samples",
        "main_layer",
        "layers",
        "table",
        "tests",
        "warnings",
        "run_config",
    ):
        assert key in doc, key
    assert doc["main_layer"] == "backbone.body.layer3.5.bn3"
    # layer3 of R50 has 6 blocks, plus bn3 of the last, plus the pixel control.
    assert len(doc["table"]) == 8 and doc["table"][-1]["kind"] == "control"
    names = {t["name"] for t in doc["tests"] if t["layer"] == doc["main_layer"]}
    assert {"kim_asymptotic", "kim_half_permutation", "full_permutation"} <= names
    # Small samples are reported honestly, not hidden.
    assert any("low power" in w for w in doc["warnings"])


def test_one_fit_per_layer_and_the_plan_says_what_p_cannot_decide(tiny_run):
    """Every layer's full permutation test compares the layer's own accuracy (one fit), and the
    P given here (20 half, 10 full permutations) is recorded as too small to decide, not as 'none'."""
    _, out = tiny_run
    doc = json.loads((out / "results.json").read_text())
    fulls = [(rec["c2st"], rec["c2st"]["full_permutation"]) for rec in doc["layers"].values() if rec["kind"] == "layer"]
    assert len(fulls) == 7
    for c2st, full in fulls:
        assert full["observed_accuracy"] == c2st["accuracy"] == full["observed_refit_accuracy"]
        assert c2st["classifier"] == "standardized" and c2st["converged"]
    plan = doc["decision_plan"]
    assert plan["permutations"] == 20 and plan["full_permutations"] == 10 and plan["n_layers"] == 7
    by_name = {d["name"]: d for d in plan["decisions"]}
    assert not by_name["layers"]["decidable"] and by_name["layers"]["needs_permutations"] == 699
    html = (out / "report.html").read_text()
    assert "cannot be decided with P = 20" in html and "at none of its" not in html


def test_config_is_saved_and_reproduces_the_run(tiny_run):
    cfg, out = tiny_run
    saved = load_config(out / "run.toml")
    assert saved.to_dict() == cfg.to_dict()
    assert tomllib.loads((out / "run.toml").read_text())["extract"]["arch"] == "resnet50"


def test_rerun_resumes_and_gives_the_same_results(tiny_run, capsys):
    cfg, out = tiny_run
    first = json.loads((out / "results.json").read_text())
    run_study(cfg)
    printed = capsys.readouterr().out
    assert "manifest: reusing" in printed
    assert re.search(r"this run: 0 done .*skipped \(already done\)", printed), printed
    second = json.loads((out / "results.json").read_text())
    assert second["table"] == first["table"]


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("[extract]\nbatch_size = 'four'\n", "batch_size"),
        ("[test]\npermutations = 'many'\n", 'permutations must be a whole number >= 0 or "auto"'),
        ("[test]\nfull_permutations = -3\n", "full_permutations must be >= 0"),
        ("[test]\nclassifier = 'ridge'\n", "classifier must be one of standardized, unscaled, study"),
    ],
)
def test_bad_config_is_one_line(tmp_path, toml, words):
    import subprocess
    import sys

    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    out = subprocess.run(
        [sys.executable, "-c", "from fovea_ray.cli import main; main()", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert words in out.stderr and str(bad) in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_permutation_counts_take_auto_in_the_toml_and_on_the_command_line(tmp_path):
    (tmp_path / "c.toml").write_text('[test]\npermutations = "auto"\nfull_permutations = 250\n')
    cfg = load_config(tmp_path / "c.toml", {"test": {"classifier": "study"}})
    assert cfg.test.permutations == "auto" and cfg.test.full_permutations == 250 and cfg.test.classifier == "study"
    assert load_config(None).test.permutations == "auto"  # the demo lets the rule choose
