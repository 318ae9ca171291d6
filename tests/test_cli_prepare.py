"""``fovea-ray prepare`` as a user runs it: outputs, summary, preview, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

CLI = [sys.executable, "-c", "from fovea_ray.cli import main; main()"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """A real process, as a user runs it."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


def run_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """The same entry point in this process (no interpreter start-up: keeps the suite fast)."""
    from fovea_ray.cli import main

    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_prepare_writes_manifest_summary_and_preview(synthetic_coco, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    res = run_in_process(
        capsys,
        "prepare",
        "--ann-file",
        synthetic_coco / "instances.json",
        "--images",
        synthetic_coco / "images",
        "--out",
        out,
        "--canvas",
        128,
        "--n-per-type",
        8,
        "--seed",
        3,
        "--ecc-band",
        "5,7",
        "--max-window-fraction",
        "0.5",
        "--preview",
        2,
    )
    assert res.returncode == 0, res.stderr
    assert out.is_file()
    summary = json.loads((tmp_path / "m.summary.json").read_text())
    assert summary["per_type"] == {"1": 8, "0": 8} and summary["total"] == 16
    # The printed table carries the same counts, per category and type.
    for cat in summary["categories"]:
        if cat["type1"]:
            assert any(
                line.split()[:1] == [cat["name"]] and line.split()[-2:] == [str(cat["type1"]), str(cat["type0"])]
                for line in res.stdout.splitlines()
            ), res.stdout
    png = tmp_path / "m.preview.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300

    from fovea_ray.data.manifest import read_manifest

    df = read_manifest(out)
    assert df.attrs["config"]["ecc_band"] == [5.0, 7.0] and df.attrs["config"]["canvas"] == [128, 128]
    # Same command, same bytes.
    again = tmp_path / "again.parquet"
    res2 = run_cli(
        "prepare",
        "--ann-file",
        synthetic_coco / "instances.json",
        "--images",
        synthetic_coco / "images",
        "--out",
        again,
        "--canvas",
        128,
        "--n-per-type",
        8,
        "--seed",
        3,
        "--ecc-band",
        "5,7",
        "--max-window-fraction",
        "0.5",
        "-q",
    )
    assert res2.returncode == 0 and again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("case", ["broken json", "missing key", "unknown image", "no image root", "bad band"])
def test_bad_input_is_one_line_without_traceback(case, synthetic_coco, tmp_path, capsys):
    ann, images = synthetic_coco / "instances.json", synthetic_coco / "images"
    good = json.loads(ann.read_text())
    bad = tmp_path / "bad.json"
    extra: list[str] = []
    if case == "broken json":
        bad.write_text(ann.read_text()[:500])
        expect = [str(bad), "not valid JSON"]
    elif case == "missing key":
        bad.write_text(json.dumps({"images": good["images"], "annotations": good["annotations"]}))
        expect = [str(bad), "'categories'"]
    elif case == "unknown image":
        bad.write_text(
            json.dumps(
                {
                    **good,
                    "annotations": good["annotations"] + [{**good["annotations"][0], "id": 10**6, "image_id": 424242}],
                }
            )
        )
        expect = [str(bad), "unknown image ids", "1000000"]
    elif case == "no image root":
        bad, images = ann, tmp_path / "nowhere"
        expect = [str(images), "image root does not exist"]
    else:
        bad, extra = ann, ["--ecc-band", "twelve"]
        expect = ["--ecc-band"]
    args = ("prepare", "--ann-file", bad, "--images", images, "--out", tmp_path / "m.parquet", *extra)
    # One real process (the exit status and stderr a shell sees); the rest in-process.
    res = run_cli(*args) if case == "broken json" else run_in_process(capsys, *args)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr and lines[0].startswith("fovea-ray: error:")
    for text in expect:
        assert text in lines[0], lines[0]
    assert not (tmp_path / "m.parquet").exists()


def test_missing_images_warn_with_count_and_names(synthetic_coco, tmp_path, capsys):
    import shutil

    images = tmp_path / "images"
    shutil.copytree(synthetic_coco / "images", images)
    (images / "000001.jpg").unlink()
    res = run_in_process(
        capsys,
        "prepare",
        "--ann-file",
        synthetic_coco / "instances.json",
        "--images",
        images,
        "--out",
        tmp_path / "m.parquet",
        "--canvas",
        256,
        "-q",
    )
    assert res.returncode == 0, res.stderr
    assert "1 of 60 images" in res.stderr and "000001.jpg" in res.stderr and "excluded" in res.stderr
    assert Path(tmp_path / "m.parquet").is_file()
