"""Helpers shared by several test modules (pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def run_cli(args: list[str]) -> tuple[int, str]:
    """Run ``fovea-ray ARGS`` in this process (reusing the session's Ray): (exit code, stdout + stderr)."""
    from fovea_ray.cli import main

    buf = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, buf.getvalue()


def signal_when(
    args: list[str], ready: Callable[[], bool], sig: int, env: dict | None = None, timeout: float = 150
) -> tuple[int, str]:
    """Start ``fovea-ray ARGS`` in a subprocess; once ``ready()`` holds, send ``sig``.

    Returns (exit code, stdout + stderr). Fails if the run ends before it is signalled.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "fovea_ray.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or dict(os.environ),
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before the signal: {proc.communicate()[0][-2000:]}"
        proc.send_signal(sig)
        text, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, text


def chunks_done(store: str | Path, n: int) -> Callable[[], bool]:
    """A ``ready`` for :func:`signal_when`: at least ``n`` chunks of ``store`` are done."""
    from fovea_ray.errors import InputError
    from fovea_ray.store import open_store

    def ready() -> bool:
        try:
            st = open_store(store)
            return st.n_chunks - len(st.pending_chunks()) >= n
        except (InputError, KeyError):
            return False  # not created yet, or still being created

    return ready


def blossom_total(eligible: dict) -> int:
    """The balanced optimum by an independent route: twice a maximum matching (Edmonds' blossom).

    Two images that share a category can form one type-1/type-0 pair, so the most
    balanced samples are twice the maximum cardinality matching of the graph that joins them.
    """
    nx = pytest.importorskip("networkx")
    g = nx.Graph()
    g.add_nodes_from(eligible)
    for a, b in itertools.combinations(eligible, 2):
        if set(eligible[a]) & set(eligible[b]):
            g.add_edge(a, b)
    return 2 * len(nx.max_weight_matching(g, maxcardinality=True))


def random_store(path: Path, n: int = 200, k: int = 50) -> Path:
    """A complete store of random values (one layer of 32 channels), for the statistics."""
    import numpy as np
    import pandas as pd

    from fovea_ray.store import create_store

    rng = np.random.default_rng(0)
    label = (np.arange(n) % 2).astype(np.int8)
    samples = pd.DataFrame(
        {
            "sample": np.arange(n),
            "image_id": np.arange(n),
            "ann_id": np.arange(n),
            "category_id": np.repeat([1, 3], n // 2),
            "label": label,
            "fixation_xy": [[80.0, 80.0]] * n,
            "eccentricity_deg": np.where(label == 1, 0.5, 10.0),
        }
    )
    layer = "backbone.body.layer1.0.bn3"
    st = create_store(
        path,
        n_samples=n,
        layers={layer: (32, ["mean", "max"])},
        control_stats=["mean"],
        chunk_size=k,
        samples=samples,
        attrs={"config": {}, "status": "complete"},
    )
    for i in range(st.n_chunks):
        a, b = st.plan.bounds(i)
        st.write_chunk(
            i,
            activations={layer: rng.normal(size=(b - a, 32, 2)).astype(np.float32)},
            controls=rng.uniform(size=(b - a, 3, 1)).astype(np.float32),
            anchor_score=rng.uniform(size=b - a).astype(np.float32),
            error=[""] * (b - a),
        )
    return path
