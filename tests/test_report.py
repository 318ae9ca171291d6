"""The report renders from a hand-made results document (no pipeline, no Ray)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from fovea_ray.report import render_report
from fovea_ray.report.render import _SMALL_N_NOTE, group_warnings
from fovea_ray.stats.battery import BatteryConfig, run_battery
from fovea_ray.stats.results import build_results, write_results

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//|ftp:)""", re.I)


def _layer(rng, n, C, shift, name, figure_data):
    y = np.repeat([0, 1], n // 2)
    v = rng.gamma(2.0, 1.0, size=(n, C, 2))
    v[y == 1, : C // 4, 1] += shift  # a quarter of the channels' max is higher for type 1
    cfg = BatteryConfig(permutations=30, full_permutations=20, mmd_permutations=50, odds_permutations=50, alpha=0.01)
    return run_battery(v, y, ["mean", "max"], cfg, name=name, figure_data=figure_data)


@pytest.fixture(scope="module")
def results_doc():
    rng = np.random.default_rng(0)
    layers = {
        "backbone.body.layer1.0": _layer(rng, 120, 16, 0.0, "backbone.body.layer1.0", False),
        "backbone.body.layer3.22.bn3": _layer(rng, 120, 32, 1.5, "backbone.body.layer3.22.bn3", True),
        "backbone.body.layer4.2": _layer(rng, 120, 16, 0.5, "backbone.body.layer4.2", False),
    }
    ctrl = _layer(rng, 120, 3, 0.0, "controls/pixels", False)
    ctrl["kind"] = "control"
    layers["controls/pixels"] = ctrl
    samples = {
        "n_total": 120,
        "n_used": 120,
        "n_not_done": 0,
        "n_error": 0,
        "per_type": {"0": 60, "1": 60},
        "per_category": [
            {"category_id": 1, "n_type0": 30, "n_type1": 30},
            {"category_id": 2, "n_type0": 30, "n_type1": 30},
        ],
    }
    return build_results(
        layers=layers,
        main_layer="backbone.body.layer3.22.bn3",
        config={"alpha": 0.01, "seed": 0},
        samples=samples,
        store={
            "path": "hand-made",
            "status": "complete",
            "weights_checksum": "0" * 64,
            "config": {"weights": "random"},
        },
    )


def test_report_renders_every_figure(results_doc, tmp_path):
    path = write_results(results_doc, tmp_path / "results.json")
    html_path = render_report(path, tmp_path / "out")
    html = html_path.read_text()
    figs = sorted(p.name for p in (tmp_path / "out" / "figures").glob("*.png"))
    for name in (
        "coefficients",
        "top_features",
        "half_permutation",
        "full_permutation",
        "scores",
        "confusion",
        "layers",
        "selectivity",
    ):
        assert f"{name}.png" in figs
        assert f'id="{name}"' in html
    for p in (tmp_path / "out" / "figures").glob("*.png"):
        with Image.open(p) as im:
            im.verify()
    assert html.count("data:image/png;base64,") == len(figs)
    assert not EXTERNAL.search(html), "the report must reference no external URL"
    # The random-weights banner is shown when the store's weights were random.
    assert "RANDOM weights" in html
    # The study's test is reported with its decision at alpha.
    assert "Kim et al. asymptotic Z" in html and "reject H0" in html
    # 30 + 30 held out at alpha = 0.01 (< 45 per class): the permutation test decides, in words.
    assert "Only 30 + 30 samples are held out per class" in html
    half_p = results_doc["layers"]["backbone.body.layer3.22.bn3"]["c2st"]["half_permutation"]["p"]
    verdict = "reject H0: P0 = P1" if half_p <= 0.01 else "do not reject H0"
    assert f"The layer is decided by the half permutation test: p = {half_p:.3g}, {verdict}" in html
    assert "unreliable at this n, not the decision" in html
    # Said once, in the summary, not again as the classifier test's grouped note (which exists).
    assert any(_SMALL_N_NOTE in w for w in results_doc["warnings"])
    assert html.count("Kim&#x27;s asymptotic test needs") + html.count("Kim's asymptotic test needs") == 1, html


def test_separation_is_visible_in_the_layer_table(results_doc):
    rows = {r["layer"]: r for r in results_doc["table"]}
    assert rows["backbone.body.layer3.22.bn3"]["accuracy"] > 0.7
    assert rows["backbone.body.layer3.22.bn3"]["p_asymptotic"] < 0.01
    assert rows["controls/pixels"]["kind"] == "control"


def test_report_cli_and_bad_input(results_doc, tmp_path):
    import subprocess
    import sys

    path = write_results(results_doc, tmp_path / "results.json")
    cli = [sys.executable, "-c", "from fovea_ray.cli import main; main()"]
    ok = subprocess.run([*cli, "report", str(path), "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "r" / "report.html").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = subprocess.run([*cli, "report", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert str(bad) in out.stderr and len(out.stderr.strip().splitlines()) <= 2


def test_repeated_layer_warnings_are_grouped():
    w = [f"backbone.body.layer1.{i}: n = 5 per type: low power" for i in range(4)] + ["global note"]
    out = group_warnings(w)
    assert out == ["n = 5 per type: low power (4 layers, e.g. layer1.0)", "global note"]


def test_full_permutation_caption_says_one_fit_and_flags_a_disagreeing_refit():
    from fovea_ray.report.render import _full_observed_note, classifier_sentence

    same = _full_observed_note({"accuracy": 0.61}, {"observed_accuracy": 0.61, "observed_refit_accuracy": 0.61})
    assert "one fit serves every test" in same and "refit" not in same
    odd = _full_observed_note({"accuracy": 0.61}, {"observed_accuracy": 0.61, "observed_refit_accuracy": 0.64})
    assert "0.640" in odd and "boundary" in odd
    study = classifier_sentence(
        {"classifier": "study", "classifier_spec": {"name": "study"}, "converged": False, "objective_gap": 0.18}
    )
    assert "study's own classifier" in study and "did not reach its optimum" in study and "0.18 above" in study
    std = classifier_sentence({"classifier_spec": {"name": "standardized"}, "converged": True, "optimality": 2e-10})
    assert "standardized classifier" in std and "training split" in std and "reached its optimum" in std
