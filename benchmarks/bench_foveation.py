"""Foveation throughput: fovea_ray's Foveator against foveatorch, side by side.

Prints megapixels per second for H × W × 3 float32 images (800 × 800 by default) at
batch sizes 1, 8 and 32, on the CPU and on CUDA when present, for fovea_ray (torch
path; and the fused Triton path on CUDA) and for foveatorch 0.1.8 (PyPI; ``pip install
-c constraints.txt "foveatorch==0.1.8" "kornia<0.8"``, the ``[bench]`` extra), our
nearest public peer: a per-image (vmapped) torch implementation of the same Geisler &
Perry / Perry-Geisler pyramid blending, on the same images and fixations.

Comparable parameters: foveatorch's ``p`` is pixels per degree and its ``alpha`` is the
half-resolution eccentricity e2 (its relative resolution is alpha / (ecc + alpha)), so it
runs with p = 30 and alpha = 2.3, one fixation per image. It is timed with as many
pyramid levels as fovea_ray uses for this image size (3 at 800 x 800: the cheaper and
fairer setting, the ratio printed); ``--also-default-levels`` adds its default of 6.

Timing: one warm-up call, then ``--repeats`` calls per configuration, fovea_ray and
foveatorch alternating so that both see the same machine load; medians are reported
(and the ratio of medians). torch's default thread count is used unless ``--threads``.
CUDA timings synchronise the device around each call.

    python benchmarks/bench_foveation.py                 # CPU (+ CUDA if present)
    python benchmarks/bench_foveation.py --batches 8 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from fovea_ray.foveation import Foveator


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _foveatorch(levels: int):
    try:
        from foveatorch import foveate
    except ImportError as exc:  # the [bench] extra is not installed
        return None, (
            f"foveatorch not importable ({exc}); install it with: "
            'python -m pip install -c constraints.txt "foveatorch==0.1.8" "kornia<0.8"'
        )

    def run(x: torch.Tensor, fix: torch.Tensor) -> torch.Tensor:
        # foveatorch takes (B, K, 2) fixations (K fixations per image) and needs the device.
        return foveate(x, fix[:, None, :], nlayers=levels, p=30.0, alpha=2.3, device=str(x.device))

    return run, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=800, help="image height and width (px)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--no-baseline", action="store_true", help="skip foveatorch")
    ap.add_argument(
        "--also-default-levels", action="store_true", help="also time foveatorch with its default 6 levels (slow)"
    )
    ap.add_argument(
        "--baseline-max-seconds",
        type=float,
        default=90.0,
        help="stop repeating foveatorch once one configuration has taken this long",
    )
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    size = args.size
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for d in devices:
        if d.startswith("cuda"):
            print(f"cuda: {torch.cuda.get_device_name(torch.device(d))}")
    print(
        f"images: {size} x {size} x 3 float32 in [0, 1], one fixation per image; repeats {args.repeats}; "
        "figures are medians"
    )

    fov = Foveator(pixels_per_degree=30.0)
    gen = torch.Generator().manual_seed(0)
    header = f"{'device':6s} {'batch':>5s} {'path':18s} {'Mpx/s':>9s} {'ms/batch':>9s} {'ratio':>7s}"
    print(header)
    print("-" * len(header))
    for dname in devices:
        device = torch.device(dname)
        for batch in args.batches:
            x = torch.rand(batch, 3, size, size, generator=gen).to(device)
            fix = torch.stack(
                [torch.rand(batch, generator=gen) * (size - 1), torch.rand(batch, generator=gen) * (size - 1)], 1
            ).to(device)
            levels = fov.num_levels(size, size, fix)
            mpx = batch * size * size / 1e6

            runs: dict[str, Callable[[], object]] = {}
            backends = ["torch"] + (["triton"] if device.type == "cuda" and _triton_ok() else [])
            for b in backends:
                f = Foveator(pixels_per_degree=30.0, backend=b)
                runs[f"fovea_ray[{b}]"] = lambda f=f, x=x, fix=fix: f(x, fix)
            baseline_note = None
            if not args.no_baseline:
                base, baseline_note = _foveatorch(levels)
                if base is not None:
                    runs[f"foveatorch L={levels}"] = lambda base=base, x=x, fix=fix: base(x, fix)
                    if args.also_default_levels and levels != 6:
                        base6, _ = _foveatorch(6)
                        runs["foveatorch L=6"] = lambda base6=base6, x=x, fix=fix: base6(x, fix)

            times: dict[str, list[float]] = {k: [] for k in runs}
            for fn in runs.values():  # warm-up: allocations, tables, kernels
                _time(fn, device)
            spent: dict[str, float] = {k: 0.0 for k in runs}
            for _ in range(args.repeats):
                for k, fn in runs.items():
                    if k.startswith("foveatorch") and spent[k] > args.baseline_max_seconds and len(times[k]) >= 2:
                        continue
                    t = _time(fn, device)
                    times[k].append(t)
                    spent[k] += t
            med = {k: statistics.median(v) for k, v in times.items()}
            ref = med.get(f"foveatorch L={levels}")
            for k in runs:
                ratio = f"{ref / med[k]:6.1f}x" if ref and k.startswith("fovea_ray") else ""
                print(
                    f"{dname:6s} {batch:5d} {k:18s} {mpx / med[k]:9.2f} {1e3 * med[k]:9.1f} {ratio:>7s}"
                    + (f"   (n={len(times[k])})" if len(times[k]) != args.repeats else "")
                )
            if baseline_note:
                print(f"  {baseline_note}")
            del x, fix
    print(
        f"ratio = foveatorch (same level count) median time / fovea_ray median time; "
        f"load average at end {os.getloadavg()[0]:.1f}"
    )


def _triton_ok() -> bool:
    from fovea_ray.foveation import _triton

    return _triton.available()


if __name__ == "__main__":
    main()
