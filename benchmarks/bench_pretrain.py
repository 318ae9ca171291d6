"""Pre-training throughput: images/s with and without foveation, its share, and the loader.

1. **Step** (``--mode step`` or ``both``): :class:`fovea_ray.pretrain.step.ClassifierStep`
   (uint8 to the device, foveation in the image's own geometry, random-resized crop, flip,
   forward, backward, SGD) on decoded synthetic ImageFolder images, with the study's
   policy ("center") against the same step without foveation ("none"), in ABBA order so
   both see the same machine load. Printed: images/s of each, the ratio (foveated /
   unfoveated) and the foveation share of the foveated step (CUDA events on a GPU).
2. **Loader** (``--mode loader`` or ``both``): the in-process loader without Ray (a torch
   ``DataLoader`` whose processes read and decode with the same
   :func:`fovea_ray.pretrain.data.read_rows` as the Ray Data tasks), alone (decode images/s)
   and feeding the foveated step: the device's busy fraction = step time / wall time.
   (Through Ray the same decode runs in Ray Data tasks; this mode isolates the host side.)

CPU (this machine):  python benchmarks/bench_pretrain.py
GPU (the issue's figure: R101, 224 px, bf16, ImageNet-like 375x500 JPEGs):
    python benchmarks/bench_pretrain.py --device cuda --arch resnet101 --input-size 224 \
        --batch 128 --image-size 333,500 --steps 20 --loader-workers 12
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


class _Rows(torch.utils.data.Dataset):
    """Index rows -> decoded uint8 images (what a Ray Data read task returns, per row)."""

    def __init__(self, table, root: str, max_side: int | None) -> None:
        self.table, self.root, self.max_side = table, root, max_side

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        from fovea_ray.pretrain.data import read_rows

        out = read_rows(np.array([i]), self.table, self.root, self.max_side)
        return out["image"][0], int(out["label"][0])


def _collate(items):
    return [im for im, _ in items], np.array([lbl for _, lbl in items])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--mode", choices=("step", "loader", "both"), default="both")
    p.add_argument("--arch", default=None, help="default: resnet101 on cuda, resnet50 on cpu")
    p.add_argument("--input-size", type=int, default=None, help="default: 224 on cuda, 64 on cpu")
    p.add_argument("--image-size", default=None, help="H,W range of the synthetic JPEGs (default 333,500 / 96,160)")
    p.add_argument("--batch", type=int, default=None, help="default: 128 on cuda, 8 on cpu")
    p.add_argument("--steps", type=int, default=3, help="measured steps per policy per ABBA leg")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--ppd", type=float, default=30.0)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="default: on for cuda")
    p.add_argument("--loader-workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", default=None, help="an existing ImageFolder root (default: a synthetic one)")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    arch = args.arch or ("resnet101" if cuda else "resnet50")
    size = args.input_size or (224 if cuda else 64)
    batch = args.batch or (128 if cuda else 8)
    lo, hi = (int(v) for v in (args.image_size or ("333,500" if cuda else "96,160")).split(","))
    amp = cuda if args.amp is None else args.amp
    if args.threads:
        torch.set_num_threads(args.threads)

    from fovea_ray.data.synthetic_imagefolder import make_synthetic_imagefolder
    from fovea_ray.foveation import Foveator
    from fovea_ray.pretrain.config import PretrainConfig
    from fovea_ray.pretrain.data import read_rows
    from fovea_ray.pretrain.index import index_imagefolder
    from fovea_ray.pretrain.step import ClassifierStep, build_classifier

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or str(
            make_synthetic_imagefolder(
                Path(tmp) / "data", n_train=max(2 * batch // 4, 4), n_val=0, size_range=(lo, hi), n_classes=4
            )
        )
        idx = index_imagefolder(root, "train")
        table = idx.table()
        decoded = read_rows(np.arange(min(batch, len(idx))), table, idx.root, 512)
        images, labels = list(decoded["image"]), decoded["label"]
        print(
            f"{arch} at {size} px, batch {batch}, images {lo}-{hi} px, device {device}, amp {amp}, "
            f"threads {torch.get_num_threads()}"
        )

        if args.mode in ("step", "both"):
            runners = {}
            for policy in ("center", "none"):
                cfg = PretrainConfig(
                    data=root, out=tmp, arch=arch, input_size=size, batch_size=batch, fixation=policy, amp=amp
                )
                model = build_classifier(arch, len(idx.classes), 0).to(device)
                fov = Foveator(pixels_per_degree=args.ppd) if policy != "none" else None
                runners[policy] = ClassifierStep(model, cfg, fov, device, steps=1000)
            times: dict[str, list[float]] = {"center": [], "none": []}
            shares: list[float] = []
            step = 0
            for policy in ("center", "none", "none", "center") * 2:
                r = runners[policy]
                for i in range(args.warmup + args.steps):
                    if cuda:
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    out = r.step(step, images, labels)
                    out["loss"].item()
                    dt = time.perf_counter() - t0
                    step += 1
                    if i >= args.warmup:
                        times[policy].append(dt)
                phases = r.timer.collect()
                if policy == "center" and phases.get("total"):
                    shares.append(phases["loaded_to_foveated"] / phases["total"])
            ips = {k: batch / statistics.median(v) for k, v in times.items()}
            print(
                f"step  foveated (center): {ips['center']:.2f} img/s   unfoveated (none): {ips['none']:.2f} img/s   "
                f"ratio {ips['center'] / ips['none']:.3f}   foveation share {statistics.median(shares):.2%} "
                f"(ABBA x2, {args.steps} steps per leg, median)"
            )

        if args.mode in ("loader", "both"):
            loader = torch.utils.data.DataLoader(
                _Rows(table, idx.root, 512),
                batch_size=batch,
                shuffle=True,
                num_workers=args.loader_workers,
                collate_fn=_collate,
                persistent_workers=args.loader_workers > 0,
                prefetch_factor=4 if args.loader_workers > 0 else None,
                pin_memory=False,
            )
            n, t0 = 0, time.perf_counter()
            for k, (ims, _) in enumerate(loader):
                n += len(ims)
                if k + 1 >= 2 * args.steps:
                    break
            dec = n / (time.perf_counter() - t0)
            cfg = PretrainConfig(data=root, out=tmp, arch=arch, input_size=size, batch_size=batch, amp=amp)
            model = build_classifier(arch, len(idx.classes), 0).to(device)
            r = ClassifierStep(model, cfg, Foveator(pixels_per_degree=args.ppd), device, steps=1000)
            done = 0
            it = iter(loader)
            for k in range(args.warmup + 2 * args.steps):
                if k == args.warmup:
                    if cuda:
                        torch.cuda.synchronize()
                    r.timer.collect()
                    t0 = time.perf_counter()
                ims, lbl = next(it, (None, None))
                if ims is None:
                    it = iter(loader)
                    ims, lbl = next(it)
                r.step(k, ims, lbl)
                done += len(ims) if k >= args.warmup else 0
            if cuda:
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            busy = r.timer.collect().get("total", 0.0) / 1e3
            print(
                f"loader ({args.loader_workers} processes, no Ray): decode {dec:.1f} img/s alone; feeding the foveated "
                f"step {done / wall:.2f} img/s, device busy {busy / wall:.1%} of the wall time"
            )


if __name__ == "__main__":
    main()
