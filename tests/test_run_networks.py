"""``fovea-ray run --model``: the whole study on a network other than the detector."""

from __future__ import annotations

import json

from fovea_ray.cli import main as cli_main

FACTORY = "fovea_ray.model.examples:two_layer_cnn"
TINY = """
seed = 1
[data]
synthetic_images = 32
synthetic_size = 160
[prepare]
canvas = 96
[extract]
batch_size = 4
chunk_size = 4
[test]
permutations = 10
full_permutations = 0
"""


def test_run_sweeps_the_blocks_of_a_factory_network(tmp_path, ray_session, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "out"
    try:
        cli_main(["run", "--config", str(tmp_path / "tiny.toml"), "--model", FACTORY, "--out", str(out)])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    doc = json.loads((out / "results.json").read_text())
    layers = [r["layer"] for r in doc["table"] if r["layer"] != "controls/pixels"]
    assert layers == ["conv1", "act1", "conv2", "act2", "pool", "flat", "head"]  # :blocks in depth order
    assert doc["main_layer"] == "act2"  # the factory's default layer
    assert (out / "report.html").is_file()
    assert 'model = "fovea_ray.model.examples:two_layer_cnn"' in (out / "run.toml").read_text()
