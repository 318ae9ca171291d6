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
