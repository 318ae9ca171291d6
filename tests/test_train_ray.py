"""`fovea-ray train` end to end on Ray Train: overfit, SIGKILL + resume, COCOeval, and the
checkpoint loaded by `build_model` and by `fovea-ray extract`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import run_cli

STEPS = 10


def _logged_steps(path: Path) -> dict[int, dict]:
    from fovea_ray.train.metrics import read_metrics

    return {int(r["step"]): r for r in read_metrics(path)}


@pytest.mark.slow
def test_train_overfits_resumes_after_sigkill_evaluates_and_feeds_extract(ray_session, tmp_path):
    from fovea_ray.data.synthetic import make_synthetic_coco
    from fovea_ray.model import build_model, weights_checksum
    from fovea_ray.train.checkpoint import list_checkpoints

    root = make_synthetic_coco(tmp_path / "data", n_images=6, seed=3, image_size=128)
    out = tmp_path / "run"
    args = [
        "train",
        "--ann-file",
        str(root / "instances.json"),
        "--images",
        str(root / "images"),
        "--out",
        str(out),
        "--steps",
        str(STEPS),
        "--checkpoint-every",
        "4",
        "--arch",
        "resnet50",
        "--trainable-layers",
        "0",
        "--lr",
        "0.01",
        "--milestones",
        "1.0",
        "--warmup-steps",
        "2",
        "--rpn-pre-nms",
        "200",
        "--rpn-post-nms",
        "64",
        "--rpn-batch",
        "64",
        "--roi-batch",
        "32",
        "--val-holdout",
        "2",
        "--cpus-per-worker",
        "2",
        "--loader-workers",
        "0",
        "--ppd",
        "60",
        "--hflip",
        "0",
        "--address",
        ray_session.get_runtime_context().gcs_address,
    ]
    command = [sys.executable, "-c", "import sys; from fovea_ray.cli import main; main(sys.argv[1:])", *args]

    # Run 1: killed (SIGKILL, no clean-up) once checkpoint 4 exists and steps 4-5 are logged.
    log1 = (tmp_path / "run1.log").open("w")
    proc = subprocess.Popen(command, stdout=log1, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "ray_train" / "checkpoint_00000004" / "meta.json").is_file() and 5 in _logged_steps(out):
                break
            time.sleep(0.1)
        assert proc.poll() is None, (
            f"the driver ended before it could be killed:\n{(tmp_path / 'run1.log').read_text()[-3000:]}"
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log1.close()
    killed = _logged_steps(out)
    done_before = max(s for s, _ in list_checkpoints(out))
    assert 4 <= done_before < STEPS

    # Run 2: the same command resumes from the newest checkpoint and finishes.
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900)
    text = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, text[-3000:]
    assert f"resumed from step {done_before}" in text

    logged = _logged_steps(out)
    assert sorted(logged) == list(range(STEPS))  # one line per step: the count continued, no restart
    for step in range(done_before, max(killed) + 1):
        # Per-step seeding: the resumed run recomputes exactly what the killed run had.
        assert logged[step]["loss"] == pytest.approx(killed[step]["loss"], rel=1e-4), step
    for rec in logged.values():
        assert {"loss", "loss_classifier", "loss_mask", "lr", "images_per_s", "foveation_share"} <= set(rec)
        assert 0 <= rec["foveation_share"] < 1 and rec["images_per_s"] > 0

    # Overfit: the training loss falls clearly on four images.
    start = logged[0]["loss"]
    end = sum(logged[s]["loss"] for s in range(STEPS - 3, STEPS)) / 3
    assert end < 0.6 * start, (start, end)

    # COCOeval on the two held-out (foveated) images at the end.
    final = logged[STEPS - 1]
    assert final["val_images"] == 2
    for key in ("bbox_AP", "segm_AP", "bbox_AP50"):
        assert 0.0 <= final[key] <= 1.0

    # The newest checkpoint: step, metadata, and it loads where the analysis loads weights.
    step, directory = list_checkpoints(out)[0]
    meta = json.loads((directory / "meta.json").read_text())
    assert step == STEPS and meta["arch"] == "resnet50" and meta["num_classes"] == 91
    assert meta["fixation_policy"] == "center" and meta["category_ids"][:9] == list(range(9))
    model = build_model("resnet50", out, (128, 128))
    assert model.fovea_ray_info["weights"] == str(directory / "model.pt")

    code, text = run_cli(
        [
            "prepare",
            "--ann-file",
            str(root / "instances.json"),
            "--images",
            str(root / "images"),
            "--out",
            str(tmp_path / "m.parquet"),
            "--canvas",
            "128",
            "--ppd",
            "60",
            "--n-per-type",
            "2",
            "--min-area",
            "100",
            "--max-window-fraction",
            "0.9",
            "--quiet",
        ]
    )
    assert code == 0, text
    code, text = run_cli(
        [
            "extract",
            str(tmp_path / "m.parquet"),
            "--out",
            str(tmp_path / "s.zarr"),
            "--weights",
            str(out),
            "--arch",
            "resnet50",
            "--layers",
            "backbone.body.layer2.3.bn3",
            "--stats",
            "mean",
            "--batch-size",
            "2",
            "--chunk-size",
            "2",
            "--backbone-only",
            "--no-progress",
        ]
    )
    assert code == 0, text
    from fovea_ray.store import open_store

    store = open_store(tmp_path / "s.zarr")
    assert store.attrs["status"] == "complete"
    assert store.attrs["config"]["weights_checksum"] == weights_checksum(model)
