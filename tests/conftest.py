"""Shared fixtures: one local Ray for the whole session, and the test datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Two cores here: keep torch from oversubscribing them when Ray workers also run.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

REPO = Path(__file__).resolve().parents[1]
COCO128 = REPO.parent / "shared" / "data" / "coco128"


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray cluster, started once per test session (2 CPUs, as in CI)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def coco128_dir() -> Path:
    """``../shared/data/coco128`` (128 real COCO images); skips where it is absent."""
    if not COCO128.is_dir():
        pytest.skip("../shared/data/coco128 is absent (it exists only beside the developers' checkout)")
    return COCO128


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory) -> Path:
    """A small seeded synthetic mini-COCO (``ROOT/images``, ``ROOT/instances.json``)."""
    from fovea_ray.data.synthetic import make_synthetic_coco

    root = tmp_path_factory.mktemp("synthetic_coco")
    make_synthetic_coco(root, n_images=60, seed=0)
    return root


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API: moto's server on 127.0.0.1 (a free port), with one bucket, ``fovea-ray-test``.

    Yields a dict: ``endpoint``, ``bucket``, ``env`` (the AWS variables a subprocess needs,
    ``AWS_ENDPOINT_URL`` included, also set in this process while the session lasts) and
    ``options`` (the same as fsspec storage options, JSON, for ``--storage-options``: Ray
    workers started before this fixture do not have the variables).
    """
    import json

    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    options = {"key": "testing", "secret": "testing", "endpoint_url": endpoint}
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem(**options).mkdir("fovea-ray-test")
    try:
        yield {"endpoint": endpoint, "bucket": "fovea-ray-test", "env": env, "options": json.dumps(options)}
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
