"""The data path at ImageNet scale without ImageNet: indexing a folder of many tiny files.

Writes ``--classes`` x ``--per-class`` files of a few bytes (default 1000 x 100 = 100k, as
ImageNet's 1000 classes) in ImageNet's ``train/<wnid>/*.JPEG`` layout, then measures in a
fresh process:

- the time of :func:`fovea_ray.pretrain.index.index_imagefolder` (warm page cache: the
  files were just written);
- the driver's resident memory before and after, and its peak (``ru_maxrss``), against
  the bound (300 MB at 100k files) -- and the Arrow index's own size;
- for comparison, the same listing kept as Python dicts (what a naive index holds);
- the per-step order (:func:`fovea_ray.pretrain.data.train_positions`) for a rank's
  first 1000 steps at ImageNet's 1.28M images (the permutation is drawn once per epoch).

    python benchmarks/bench_pretrain_index.py                 # 100k files
    python benchmarks/bench_pretrain_index.py --per-class 1281  # ImageNet's 1.28M
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _measure(root: str) -> None:
    import numpy as np
    import pyarrow  # noqa: F401 - imported before the baseline, as the driver has it loaded

    from fovea_ray.pretrain.index import index_imagefolder

    base = _rss_mb()
    t0 = time.perf_counter()
    idx = index_imagefolder(root, "train")
    dt = time.perf_counter() - t0
    after = _rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    table = idx.table()
    dt_table = time.perf_counter() - t0
    print(f"indexed {len(idx)} files in {len(idx.classes)} classes: {dt:.2f} s ({len(idx) / dt:,.0f} files/s)")
    print(f"driver RSS: {base:.0f} MB before, {after:.0f} MB after (+{after - base:.0f} MB); peak {peak:.0f} MB")
    print(
        f"Arrow index: {idx.nbytes() / 2**20:.1f} MB ({idx.nbytes() / len(idx):.0f} B/file); "
        f"table() {dt_table * 1e3:.1f} ms, {table.nbytes / 2**20:.1f} MB"
    )
    names = idx.names.to_pylist()
    before_dicts = _rss_mb()
    dicts = [{"path": root + "/train/" + n, "label": int(lbl)} for n, lbl in zip(names, idx.labels)]
    print(f"the same as {len(dicts)} Python dicts: +{_rss_mb() - before_dicts:.0f} MB")
    del dicts, names

    from fovea_ray.pretrain.data import train_positions

    n = 1_281_167
    t0 = time.perf_counter()
    rows = train_positions(np.arange(1000 * 32), rank=3, world=8, batch=32, n=n, seed=0)
    print(
        f"step order at N={n:,}: a rank's first 1000 steps x 32 rows in {time.perf_counter() - t0:.2f} s "
        f"(max row {rows.max()})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--keep", default=None, help="write the tree here and keep it")
    p.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        _measure(args.measure)
        return
    tmp = args.keep or tempfile.mkdtemp(prefix="fovea-index-")
    try:
        t0 = time.perf_counter()
        for c in range(args.classes):
            folder = Path(tmp) / "train" / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(args.per_class):
                (folder / f"n{c:08d}_{i}.JPEG").write_bytes(b"\xff\xd8")
        print(f"wrote {args.classes * args.per_class} files in {time.perf_counter() - t0:.1f} s under {tmp}")
        # A fresh process, so the memory figures are the driver's alone.
        subprocess.run([sys.executable, __file__, "--measure", tmp], check=True)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
