"""Learning curve of ``fovea-ray pretrain`` on the synthetic ImageFolder (CPU, Ray Train).

Runs the real command path (Ray Data stream, Ray Train workers, DDP, checkpoints) for a
few hundred steps and prints training top-1 (mean over windows of steps) and validation
top-1/top-5 at each evaluation, against chance (1 / classes).

    python benchmarks/pretrain_curve.py                      # 300 steps, 2 workers, resnet18
    python benchmarks/pretrain_curve.py --fixation none      # the unfoveated control
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--per-class", type=int, default=100, help="training images per class")
    p.add_argument("--batch", type=int, default=8, help="per worker")
    p.add_argument("--input-size", type=int, default=48)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--min-crop-scale", type=float, default=0.08)
    p.add_argument("--fixation", default="center")
    p.add_argument("--ppd", type=float, default=70.0, help="70 px/deg: blur from ~20 px off the fixation")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--window", type=int, default=25)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    import ray

    from fovea_ray.data.synthetic_imagefolder import make_synthetic_imagefolder
    from fovea_ray.pretrain import PretrainConfig, pretrain
    from fovea_ray.train.metrics import read_metrics

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic_imagefolder(Path(tmp) / "data", n_train=args.per_class, n_val=25, n_classes=args.classes)
        out = Path(args.out) if args.out else Path(tmp) / "run"
        cfg = PretrainConfig(
            data=str(data),
            out=str(out),
            arch=args.arch,
            steps=args.steps,
            batch_size=args.batch,
            lr=args.lr,
            warmup_steps=args.steps // 15,
            input_size=args.input_size,
            crop_scale=(args.min_crop_scale, 1.0),
            fixation=args.fixation,
            pixels_per_degree=args.ppd,
            workers=args.workers,
            cpus_per_worker=0.5,
            log_every=1,
            eval_every=args.eval_every,
            checkpoint_every=args.steps,
            probe_images=8,
        )
        t0 = time.perf_counter()
        pretrain(cfg)
        wall = time.perf_counter() - t0
        recs = read_metrics(out)
    chance = 1 / args.classes
    print(
        f"\n{args.arch} {args.input_size}px, min crop scale {args.min_crop_scale}, "
        f"{args.workers} workers x {args.batch}, fixation {args.fixation}, "
        f"ppd {args.ppd}, chance {chance:.3f}, wall {wall:.0f} s"
    )
    print(f"{'steps':>11} {'loss':>7} {'train top-1':>12} {'val top-1':>10} {'val top-5':>10}")
    by_step = {r["step"]: r for r in recs}
    for start in range(0, args.steps, args.window):
        window = [by_step[s] for s in range(start, min(start + args.window, args.steps)) if s in by_step]
        loss = sum(r["loss"] for r in window) / len(window)
        top1 = sum(r["train_top1"] for r in window) / len(window)
        ev = [r for r in window if "val_top1" in r]
        val = f"{ev[-1]['val_top1']:>10.3f} {ev[-1]['val_top5']:>10.3f}" if ev else ""
        print(f"{start:>5}-{window[-1]['step']:<5} {loss:>7.3f} {top1:>12.3f} {val}")
    ips = [r["images_per_s"] for r in recs[5:]]
    print(
        f"images/s (median over logged steps): {sorted(ips)[len(ips) // 2]:.1f}; "
        f"foveation share (median): {sorted(r['foveation_share'] for r in recs[5:])[len(ips) // 2]:.3f}"
    )


if __name__ == "__main__":
    main()
