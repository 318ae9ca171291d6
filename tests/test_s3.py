"""Every path an s3:// URL, against a real S3 API (moto's server): issue 14, defect 2.

prepare -> extract -> test -> report with the annotations, the images, the manifest,
the store, results.json, the figures and report.html all in a bucket, compared with the
same commands on local paths. The S3 extraction's driver is SIGKILLed after 2 chunks
and the rerun resumes it; the store must equal the uninterrupted local one value for
value. (S3-vs-local throughput: benchmarks/bench_s3.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import chunks_done, run_cli, signal_when

from fovea_ray.store import open_store

# The pipeline is under test, not the network: a two-layer user factory keeps it fast.
NET = "fovea_ray.model.examples:two_layer_cnn"
EXTRACT = [
    "--model",
    NET,
    "--layers",
    "act1,act2",
    "--stats",
    "mean,max",
    "--chunk-size",
    "1",
    "--batch-size",
    "1",
    "--no-progress",
]
TEST = ["--local", "--permutations", "19", "--mmd-permutations", "0", "--no-progress"]


def _fs(s3):
    import s3fs

    return s3fs.S3FileSystem(**json.loads(s3["options"]))


def _cli(args: list[str]) -> str:
    code, text = run_cli(args)
    assert code == 0, f"{args[:3]}: {text[-3000:]}"
    return text


def _prepare(ann: str, images: str, out: str, options: list[str]) -> None:
    _cli(
        [*options, "prepare", "--ann-file", ann, "--images", images, "--out", f"{out}/m.parquet"]
        + ["--canvas", "160", "--n-per-type", "4", "--quiet"]
    )


def _test_and_report(out: str, options: list[str]) -> dict:
    return {
        "test": _cli([*options, "test", f"{out}/store.zarr", "--out", f"{out}/results.json", *TEST]),
        "report": _cli([*options, "report", f"{out}/results.json", "--out", f"{out}/report"]),
    }


@pytest.fixture(scope="module")
def local_run(ray_session, synthetic_coco, tmp_path_factory) -> Path:
    """The reference: the same four steps on local paths."""
    out = str(tmp_path_factory.mktemp("local"))
    _prepare(str(synthetic_coco / "instances.json"), str(synthetic_coco / "images"), out, [])
    _cli(["extract", f"{out}/m.parquet", "--out", f"{out}/store.zarr", *EXTRACT])
    _test_and_report(out, [])
    return Path(out)


@pytest.fixture(scope="module")
def s3_coco(s3_server, synthetic_coco) -> str:
    fs = _fs(s3_server)
    root = f"{s3_server['bucket']}/coco"
    fs.put(str(synthetic_coco / "instances.json"), f"{root}/instances.json")
    fs.put(str(synthetic_coco / "images") + "/", f"{root}/images/", recursive=True)
    return f"s3://{root}"


def test_s3_end_to_end_with_a_sigkill_resume_matches_a_local_run(
    ray_session, s3_server, s3_coco, local_run, tmp_path, monkeypatch
):
    """prepare -> extract (SIGKILLed after 2 chunks, then resumed) -> test -> report, all in S3."""
    from fovea_ray.io import STORAGE_OPTIONS_ENV

    monkeypatch.setenv(STORAGE_OPTIONS_ENV, "")  # --storage-options sets it; restored afterwards
    monkeypatch.chdir(tmp_path)  # a mangled URL would show up here as a folder named "s3:"
    url = f"s3://{s3_server['bucket']}/run"
    options = ["--storage-options", s3_server["options"]]
    _prepare(f"{s3_coco}/instances.json", f"{s3_coco}/images", url, options)

    extract = ["extract", f"{url}/m.parquet", "--out", f"{url}/store.zarr", *EXTRACT]
    address = ["--address", ray_session.get_runtime_context().gcs_address]
    store = f"{url}/store.zarr"
    code, _ = signal_when(
        [*options, *extract, *address], chunks_done(store, 2), signal.SIGKILL, {**os.environ, **s3_server["env"]}
    )
    assert code == -signal.SIGKILL
    left = len(open_store(f"{url}/store.zarr").pending_chunks())
    assert 0 < left <= 6
    text = _cli([*options, *extract])
    assert f"{8 - left} skipped" in text and "complete" in text
    texts = _test_and_report(url, options)

    assert f"wrote {url}/results.json" in texts["test"]
    assert f"report: {url}/report/report.html" in texts["report"]
    assert not any(tmp_path.iterdir()), f"local files were written: {list(tmp_path.iterdir())}"
    fs = _fs(s3_server)
    for key in ("m.parquet", "m.summary.json", "results.json", "report/report.html"):
        assert fs.exists(f"{url}/{key}"), key
    assert fs.glob(f"{url}/report/figures/*.png")

    # The same samples and values as the uninterrupted local run, and the same statistics.
    got, want = open_store(f"{url}/store.zarr"), open_store(local_run / "store.zarr")
    assert got.attrs["status"] == "complete" and got.n_samples == want.n_samples == 8
    np.testing.assert_array_equal(got.samples["image_id"], want.samples["image_id"])
    for layer in want.layers:
        np.testing.assert_array_equal(got.activations(layer), want.activations(layer))
    mine = json.loads(fs.cat(f"{url}/results.json"))
    ref = json.loads((local_run / "results.json").read_text())
    assert mine["table"] == ref["table"] and mine["tests"] == ref["tests"]


def test_chunks_written_by_another_process_after_a_listing_are_seen(s3_server):
    """A sink's chunk must not read as missing where the driver had listed the store before.

    s3fs caches listings: after ``damage()`` listed the store, the driver read the chunks
    that sink tasks wrote later as fill values, so a finished resume said "incomplete".
    """
    from test_store import CONTROLS, LAYERS, chunk_payload, manifest

    from fovea_ray.store import create_store

    options = json.loads(s3_server["options"])
    url = f"s3://{s3_server['bucket']}/listing/s.zarr"
    create_store(
        url,
        n_samples=20,
        layers=LAYERS,
        control_stats=CONTROLS,
        chunk_size=5,
        samples=manifest(20),
        attrs={"config": {}},
        overwrite=True,
        storage_options=options,
    )
    driver = open_store(url, mode="r+", storage_options=options)
    acts, controls, score, error = chunk_payload(driver, 0)
    driver.write_chunk(0, activations=acts, controls=controls, anchor_score=score, error=error)
    assert driver.damage() == [] and driver.pending_chunks() == [1, 2, 3]  # lists the store
    # The sink, in another process (as a Ray task is).
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[3])\n"
        "from test_store import chunk_payload\n"
        "from fovea_ray.store import open_store\n"
        "sink = open_store(sys.argv[1], mode='r+', storage_options=json.loads(sys.argv[2]))\n"
        "acts, controls, score, error = chunk_payload(sink, 2)\n"
        "sink.write_chunk(2, activations=acts, controls=controls, anchor_score=score, error=error)\n"
    )
    here = str(Path(__file__).parent)
    subprocess.run([sys.executable, "-c", code, url, s3_server["options"], here], check=True, timeout=120)
    acts = chunk_payload(driver, 2)[0]
    for st in (driver, open_store(url, storage_options=options)):
        assert st.pending_chunks() == [1, 3]
        layer = next(iter(LAYERS))
        np.testing.assert_array_equal(st.activations(layer)[10:15], acts[layer])
