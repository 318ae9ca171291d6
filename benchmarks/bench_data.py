"""Speed of the data stage, each against a named baseline, printed as ratios in one run.

1. ``render_batch`` (cut window + margin, one foveator call per size group) against the
   obvious baseline: foveate each *full* image on its own, then crop and paste.
   Both give the same pixels (tests/test_render.py bounds the difference at 1e-4).
2. ``balanced_assignment`` (certified max-flow + parity repair) against solving the exact
   mixed-integer program for every component (``method="milp"``), on COCO-like data.
3. ``make_synthetic_coco``: 200 images at 320 px.

Run: ``python benchmarks/bench_data.py [--device cuda] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _best(fn, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up (first-call allocations, lazy imports)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_render(device: str, repeats: int) -> None:
    from fovea_ray.data.render import GREY, render_batch
    from fovea_ray.foveation import Foveator

    fov = Foveator(pixels_per_degree=30.0)
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for label, sizes, canvas in [
        ("demo: 320x320 images, 256 canvas", [(320, 320)] * 16, 256),
        ("COCO-like: 640x480/480x640, 640 canvas", [(480, 640), (640, 480)] * 8, 640),
        ("COCO-like: 640x480/480x640, 256 canvas", [(480, 640), (640, 480)] * 8, 256),
    ]:
        imgs = [torch.rand(3, h, w, generator=g).to(device) for h, w in sizes]
        fix, win = [], []
        for k, (h, w) in enumerate(sizes):
            cx, cy = rng.uniform(40, w - 40), rng.uniform(40, h - 40)
            r = 0.0 if k % 2 == 0 else rng.uniform(8, 12) * 30.0
            t = rng.uniform(0, 2 * np.pi)
            fix.append([cx - r * np.cos(t), cy - r * np.sin(t)])
            win.append([int(round(cx - canvas / 2)), int(round(cy - canvas / 2)), canvas, canvas])
        fix_a, win_a = np.array(fix), np.array(win)

        def fast():
            return render_batch(imgs, fix_a, win_a, (canvas, canvas), fov, device=device)

        def baseline():  # per image: foveate the whole frame, then crop and paste
            out = torch.full((len(imgs), 3, canvas, canvas), GREY, device=device)
            for i, im in enumerate(imgs):
                f = fov(im[None], fix_a[i : i + 1])[0]
                x0, y0, w, h = win_a[i]
                sx0, sy0 = max(x0, 0), max(y0, 0)
                sx1, sy1 = min(x0 + w, im.shape[2]), min(y0 + h, im.shape[1])
                out[i, :, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = f[:, sy0:sy1, sx0:sx1]
            return out

        diff = float((fast() - baseline()).abs().max())
        t_fast, t_base = _best(fast, repeats, sync), _best(baseline, repeats, sync)
        n = len(imgs)
        print(
            f"render_batch [{device}] {label}, batch {n}: {n / t_fast:7.1f} img/s vs per-image full-frame "
            f"{n / t_base:7.1f} img/s -> {t_base / t_fast:4.2f}x (max |diff| {diff:.1e})"
        )


def bench_balance(repeats: int) -> None:
    from fovea_ray.data.balance import balanced_assignment

    rng = np.random.default_rng(0)
    p = 1 / np.arange(1, 81) ** 1.1
    p /= p.sum()
    for n in (20_000, 118_000):
        sizes = np.minimum(rng.geometric(0.5, size=n), 80)
        eligible = {i: list(set(rng.choice(80, size=int(s), p=p).tolist())) for i, s in enumerate(sizes)}
        t_fast = _best(lambda: balanced_assignment(eligible, max_pairs=2500), max(1, repeats - 2))
        r = balanced_assignment(eligible, max_pairs=2500)
        line = (
            f"balanced_assignment, {n} images x 80 Zipf categories, cap 2500/type: {t_fast:6.2f} s "
            f"(total {r.total}, optimum {r.optimum}, certified by {r.certified_by})"
        )
        if n <= 20_000:  # the exact program on everything is only affordable at the small size
            t0 = time.perf_counter()
            m = balanced_assignment(eligible, max_pairs=2500, method="milp")
            t_milp = time.perf_counter() - t0
            assert m.total == r.total and m.optimum == r.optimum
            line += f" vs MILP everywhere {t_milp:6.2f} s -> {t_milp / t_fast:5.1f}x"
        print(line)


def bench_synthetic() -> None:
    from fovea_ray.data.synthetic import make_synthetic_coco

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_synthetic_coco(Path(tmp), n_images=200, seed=0)
        print(f"make_synthetic_coco: 200 images at 320 px in {time.perf_counter() - t0:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    bench_render(args.device, args.repeats)
    bench_balance(args.repeats)
    bench_synthetic()


if __name__ == "__main__":
    main()
