"""Cost of the chunk checksums (crc32c codec + empty chunks written + verified reads).

The same store twice, with and without checksums (``create_store(checksums=False)`` is
how stores were made before): the study's layer shape (C = 1024 channels x 3 stats,
float32) plus the pixel controls, N samples in chunks of K. Timed, best of ``--repeats``:

- write: every chunk through ``Store.write_chunk`` (what a sink task does);
- read: ``Store.activations(layer)`` (what ``fovea-ray test`` does; with checksums it
  also lists the chunk objects and checks the done chunks are all there);
- verify: ``Store.damage()`` over every array (what ``extract`` runs on a store it
  resumes, and ``fovea-ray verify``), against the plain read.

Run: ``python benchmarks/bench_checksum.py [--n 4096] [--chunk 32] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fovea_ray.store import create_store, open_store

LAYER = "backbone.body.layer3.22.bn3"
CONTROLS = ["mean", "median", "max", "hf_energy"]


def _samples(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "sample": np.arange(n),
            "image_id": np.arange(n) + 1,
            "ann_id": np.arange(n) + 1,
            "category_id": rng.integers(1, 91, n),
            "label": (np.arange(n) % 2).astype(np.int8),
            "fixation_xy": [[1.0, 2.0]] * n,
            "file_name": [f"{i:012d}.jpg" for i in range(n)],
        }
    )


def _make(path: Path, n: int, k: int, checksums: bool):
    return create_store(
        path,
        n_samples=n,
        layers={LAYER: (1024, ["mean", "median", "max"])},
        control_stats=CONTROLS,
        chunk_size=k,
        samples=_samples(n),
        attrs={"config": {}, "versions": {}, "weights_checksum": "x", "foveation": {}},
        checksums=checksums,
    )


def _write(store, payload) -> None:
    for i in store.plan:
        a, b = store.plan.bounds(i)
        store.write_chunk(
            i,
            activations={LAYER: payload[a:b]},
            controls=np.ones((b - a, 3, 4), np.float32),
            anchor_score=np.ones(b - a, np.float32),
            error=[""] * (b - a),
        )


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    payload = rng.standard_normal((args.n, 1024, 3)).astype(np.float32)
    mb = payload.nbytes / 1e6
    root = Path(tempfile.mkdtemp(prefix="bench_checksum_"))
    rows = {}
    try:
        for checksums in (False, True):
            name = "crc32c" if checksums else "none"

            def write(checksums=checksums, name=name) -> None:
                shutil.rmtree(root / f"{name}.zarr", ignore_errors=True)
                _write(_make(root / f"{name}.zarr", args.n, args.chunk, checksums), payload)

            w = _best(write, args.repeats)
            st = open_store(root / f"{name}.zarr")
            r = _best(lambda st=st: st.activations(LAYER), args.repeats)
            v = _best(lambda st=st: st.damage(), args.repeats) if checksums else float("nan")
            assert np.array_equal(st.activations(LAYER), payload)
            rows[name] = (w, r, v)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    (w0, r0, _), (w1, r1, v1) = rows["none"], rows["crc32c"]
    print(f"N={args.n} K={args.chunk}: {args.n // args.chunk} chunks, {mb:.0f} MB of activations (C=1024, S=3)")
    print(f"write  no checksum {w0:7.2f} s   crc32c {w1:7.2f} s   ratio {w1 / w0:5.2f}")
    print(f"read   no checksum {r0:7.2f} s   crc32c {r1:7.2f} s   ratio {r1 / r0:5.2f}")
    print(f"verify (damage(), every array) {v1:7.2f} s = {v1 / r0:5.2f} x the plain read ({mb / v1:.0f} MB/s)")


if __name__ == "__main__":
    main()
