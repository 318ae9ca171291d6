"""`fovea-ray pretrain` end to end on Ray Train (2 workers at 0.5 CPU, Ray Data beside them):
top-1 above chance, a corrupt JPEG skipped and counted, SIGKILL + rerun with bit-identical
losses, bad input refused before training, and the checkpoint feeding `fovea-ray train
--backbone-weights` and then `fovea-ray extract`.

resnet18 at 32 px keeps the learning run to seconds per step on two cores; the chain to
Mask R-CNN uses resnet50, the smallest backbone `train` accepts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from _helpers import run_cli as _cli_in_process
from test_train_ray import _logged_steps

STEPS = 16


@pytest.mark.slow
def test_pretrain_learns_skips_a_corrupt_jpeg_and_resumes_bit_identically_after_sigkill(ray_session, tmp_path):
    from fovea_ray.data.synthetic_imagefolder import make_synthetic_imagefolder
    from fovea_ray.pretrain.checkpoint import load_pretrained
    from fovea_ray.train.checkpoint import list_checkpoints

    data = make_synthetic_imagefolder(tmp_path / "data", n_train=12, n_val=6, n_classes=4, seed=0)
    # A truncated JPEG in the middle of the index (the driver's probe reads the first and last files only).
    victim = data / "train" / "n00000002_square" / "n00000002_square_5.JPEG"
    victim.write_bytes(victim.read_bytes()[:200])
    out = tmp_path / "run"
    args = [
        "pretrain",
        "--data",
        str(data),
        "--out",
        str(out),
        "--arch",
        "resnet18",
        "--steps",
        str(STEPS),
        "--workers",
        "2",
        "--cpus-per-worker",
        "0.5",
        "--batch-size",
        "8",
        "--input-size",
        "32",
        "--lr",
        "0.1",
        "--warmup-steps",
        "2",
        "--fixation",
        "uniform",
        "--ppd",
        "70",
        "--checkpoint-every",
        "6",
        "--log-every",
        "1",
        "--probe-images",
        "2",
        "--address",
        ray_session.get_runtime_context().gcs_address,
    ]
    command = [sys.executable, "-c", "import sys; from fovea_ray.cli import main; main(sys.argv[1:])", *args]

    # Run 1: SIGKILLed once checkpoint 6 exists and steps 6-7 are logged past it.
    log1 = (tmp_path / "run1.log").open("w")
    proc = subprocess.Popen(command, stdout=log1, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "ray_train" / "checkpoint_00000006" / "meta.json").is_file() and 7 in _logged_steps(out):
                break
            time.sleep(0.1)
        assert proc.poll() is None, (
            f"the driver ended before it was killed:\n{(tmp_path / 'run1.log').read_text()[-3000:]}"
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log1.close()
    killed = _logged_steps(out)
    done_before = list_checkpoints(out)[0][0]
    assert 6 <= done_before < STEPS and max(killed) > done_before

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=900)
    text = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, text[-3000:]
    assert f"resumed from step {done_before}" in text

    logged = _logged_steps(out)
    assert sorted(logged) == list(range(STEPS))
    for step in range(done_before, max(killed) + 1):
        # Same weights, optimizer state, data rows and per-step seeds: the same float, bit for bit.
        assert logged[step]["loss"] == killed[step]["loss"], step
        assert logged[step]["train_top1"] == killed[step]["train_top1"], step
    for rec in logged.values():
        assert {"loss", "lr", "images_per_s", "foveation_share", "train_top1", "skipped_images"} <= set(rec)
        assert 0 < rec["foveation_share"] < 1 and rec["images_per_s"] > 0
    # 16 steps x 16 images over 48 files = 5.3 epochs: the corrupt file came up once per epoch.
    final = logged[STEPS - 1]
    assert final["skipped_images"] in (5, 6), final
    assert f"skipped {final['skipped_images']} unreadable training images" in text
    # Learning: validation top-1 above chance (0.25) on 24 foveated val images after only 16
    # steps: 12/24 here; >= 10/24 has probability ~0.05 at chance. The longer curve
    # (benchmarks/pretrain_curve.py, 300 steps) reaches 0.59-0.71.
    assert final["val_images"] == 24
    assert final["val_top1"] >= 0.4, final
    assert final["val_top5"] == 1.0  # 4 classes
    arch, state, meta = load_pretrained(out)
    assert arch == "resnet18" and meta["step"] == STEPS and meta["fixation_policy"] == "uniform"
    assert meta["foveation"]["pixels_per_degree"] == 70.0 and meta["skipped_images"] == final["skipped_images"]
    assert meta["classes"] == sorted(p.name for p in (data / "train").iterdir()) and "fc.weight" in state


def test_pretrain_refuses_bad_input_in_one_line_before_training(tmp_path):
    from fovea_ray.data.synthetic_imagefolder import make_synthetic_imagefolder

    code, text = _cli_in_process(["pretrain", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert code == 2 and "ImageFolder root not found" in text and len(text.strip().splitlines()) == 1
    data = make_synthetic_imagefolder(tmp_path / "d", n_train=2, n_val=0, n_classes=2)
    (data / "train" / "n00000003_empty").mkdir()
    code, text = _cli_in_process(["pretrain", "--data", str(data), "--out", str(tmp_path / "o")])
    assert code == 2 and "n00000003_empty: empty class folder" in text and len(text.strip().splitlines()) == 1
    (data / "train" / "n00000003_empty").rmdir()
    (data / "train" / "n00000001_disc" / "n00000001_disc_0.JPEG").write_bytes(b"\xff\xd8 broken")
    code, text = _cli_in_process(["pretrain", "--data", str(data), "--out", str(tmp_path / "o")])
    assert code == 2 and "n00000001_disc_0.JPEG: unreadable image" in text and len(text.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_pretrained_resnet50_feeds_train_backbone_weights_and_extract(ray_session, tmp_path):
    import torch

    from fovea_ray.data.synthetic import make_synthetic_coco
    from fovea_ray.data.synthetic_imagefolder import make_synthetic_imagefolder
    from fovea_ray.model import build_model, weights_checksum
    from fovea_ray.pretrain.checkpoint import load_pretrained
    from fovea_ray.store import open_store
    from fovea_ray.train.checkpoint import list_checkpoints

    address = ray_session.get_runtime_context().gcs_address
    data = make_synthetic_imagefolder(tmp_path / "sif", n_train=4, n_val=2, n_classes=3)
    pre = tmp_path / "pre"
    code, text = _cli_in_process(
        [
            "pretrain", "--data", str(data), "--out", str(pre), "--arch", "resnet50", "--steps", "2",
            "--workers", "2", "--cpus-per-worker", "0.5", "--batch-size", "2", "--input-size", "32",
            "--ppd", "70", "--log-every", "1", "--address", address,
        ]
    )  # fmt: skip
    assert code == 0, text
    _, pre_state, _ = load_pretrained(pre)

    coco = make_synthetic_coco(tmp_path / "coco", n_images=4, seed=3, image_size=128)
    common = [
        "train", "--ann-file", str(coco / "instances.json"), "--images", str(coco / "images"),
        "--steps", "1", "--trainable-layers", "0", "--rpn-pre-nms", "200", "--rpn-post-nms", "64",
        "--rpn-batch", "64", "--roi-batch", "32", "--cpus-per-worker", "2", "--loader-workers", "0",
        "--ppd", "60", "--backbone-weights", str(pre), "--address", address,
    ]  # fmt: skip
    code, text = _cli_in_process([*common, "--out", str(tmp_path / "bad"), "--arch", "resnet101"])
    assert code == 2 and "pretrained resnet50 backbone cannot initialise a resnet101" in text
    det = tmp_path / "det"
    code, text = _cli_in_process([*common, "--out", str(det), "--arch", "resnet50"])
    assert code == 0, text
    _, directory = list_checkpoints(det)[0]
    det_state = torch.load(directory / "model.pt", weights_only=True)
    # trainable-layers 0: the whole body is the pretrained classifier's, fc dropped.
    body = {k[len("backbone.body.") :]: v for k, v in det_state.items() if k.startswith("backbone.body.")}
    assert body and all(torch.equal(v, pre_state[k]) for k, v in body.items())
    assert set(pre_state) - set(body) >= {"fc.weight", "fc.bias"}

    code, text = _cli_in_process(
        [
            "prepare", "--ann-file", str(coco / "instances.json"), "--images", str(coco / "images"),
            "--out", str(tmp_path / "m.parquet"), "--canvas", "128", "--ppd", "60", "--n-per-type", "2",
            "--min-area", "100", "--max-window-fraction", "0.9", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0, text
    code, text = _cli_in_process(
        [
            "extract", str(tmp_path / "m.parquet"), "--out", str(tmp_path / "s.zarr"), "--weights", str(det),
            "--arch", "resnet50", "--layers", "backbone.body.layer2.3.bn3", "--stats", "mean",
            "--batch-size", "2", "--chunk-size", "2", "--backbone-only", "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0, text
    store = open_store(tmp_path / "s.zarr")
    assert store.attrs["status"] == "complete"
    assert store.attrs["config"]["weights_checksum"] == weights_checksum(build_model("resnet50", det, (128, 128)))
    assert json.loads((directory / "meta.json").read_text())["config"]["backbone_weights"] == str(pre)
