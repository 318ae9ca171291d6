"""Training-step throughput and the foveation share of the step.

One Mask R-CNN training step (:class:`fovea_ray.train.loop.StepRunner`: to device, flip,
foveate on the device, forward, backward, SGD) on synthetic COCO images, with the study's
fixation policy ("center") against the baseline of the same step without foveation
(policy "none", the unfoveated control network's step). Steps of the two alternate so
both see the same machine load (in ABBA order, so neither always runs first). Printed:
images/s of each, the ratio (foveated / unfoveated throughput), and the foveation share of
the foveated step's device time (CUDA events on a GPU).

CPU (this machine's default):  python benchmarks/bench_train.py
GPU (the issue's figure):       python benchmarks/bench_train.py --device cuda --arch resnet101 \
                                    --size 800 --batch 4 --amp --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default=None, help="default: resnet101 on cuda, resnet50 on cpu")
    p.add_argument("--size", type=int, default=None, help="image side in px (default: 800 on cuda, 160 on cpu)")
    p.add_argument("--batch", type=int, default=None, help="images per step (default: 4 on cuda, 2 on cpu)")
    p.add_argument("--steps", type=int, default=4, help="measured steps per policy")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="default: on for cuda")
    p.add_argument("--ppd", type=float, default=30.0)
    p.add_argument("--trainable-layers", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    arch = args.arch or ("resnet101" if cuda else "resnet50")
    size = args.size or (800 if cuda else 160)
    batch = args.batch or (4 if cuda else 2)
    amp = cuda if args.amp is None else args.amp
    if args.threads:
        torch.set_num_threads(args.threads)

    from fovea_ray.data.synthetic import make_synthetic_coco
    from fovea_ray.train.dataset import CocoInstances, LabelMap, collate, load_coco

    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_coco(Path(tmp) / "data", n_images=batch, seed=0, image_size=size)
        coco = load_coco(root / "instances.json")
        lm = LabelMap.for_categories(coco.getCatIds())
        images, targets = collate([CocoInstances(coco, root / "images", lm)[i] for i in range(batch)])
        device = torch.device(args.device)
        runners = build_runners(
            root,
            tmp,
            lm.num_classes,
            images,
            device,
            arch=arch,
            batch=batch,
            amp=amp,
            ppd=args.ppd,
            trainable_layers=args.trainable_layers,
        )
        times, shares, fov_ms = abba_steps(runners, images, targets, warmup=args.warmup, steps=args.steps, cuda=cuda)
    ips = {k: batch / statistics.median(v) for k, v in times.items()}
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"device: {name}; {arch}, {batch} x {size}x{size} px, AMP {'on' if amp else 'off'}, "
        f"trainable layers {args.trainable_layers}, ppd {args.ppd:g}; medians of {args.steps} steps"
    )
    print(f"foveated step (center):      {ips['center']:.2f} img/s")
    print(f"baseline step (none):        {ips['none']:.2f} img/s")
    print(f"ratio foveated/unfoveated:   {ips['center'] / ips['none']:.3f}")
    print(
        f"foveation: {statistics.median(fov_ms):.1f} ms per step = "
        f"{100 * statistics.median(shares):.2f}% of the step's device time"
    )


def build_runners(
    root: Path,
    out: str,
    num_classes: int,
    images: list[torch.Tensor],
    device: torch.device,
    *,
    arch: str,
    batch: int,
    amp: bool,
    ppd: float,
    trainable_layers: int,
) -> dict:
    """One :class:`StepRunner` per fixation policy: "center" (foveated) and "none" (the baseline).

    ``root`` is a synthetic COCO folder (``instances.json``, ``images/``); ``images`` are the
    uint8 step images, used to calibrate the frozen batch norms of the random backbone.
    """
    from fovea_ray.foveation import Foveator
    from fovea_ray.train.config import TrainConfig
    from fovea_ray.train.loop import StepRunner, build_training_model, calibrate_frozen_bn

    runners = {}
    for policy in ("center", "none"):
        cfg = TrainConfig(
            ann_file=str(root / "instances.json"),
            images=str(root / "images"),
            out=out,
            arch=arch,
            steps=1000,
            batch_size=batch,
            trainable_layers=trainable_layers,
            amp=amp,
            fixation=policy,
            pixels_per_degree=ppd,
            lr=0.002,
            warmup_steps=0,
        )
        model = build_training_model(cfg, num_classes)
        calibrate_frozen_bn(model, [im.float() / 255 for im in images])
        model.to(device)
        fov = Foveator(pixels_per_degree=ppd) if policy != "none" else None
        runners[policy] = StepRunner(model, cfg, fov, device)
    return runners


def abba_steps(
    runners: dict, images: list[torch.Tensor], targets: list[dict], *, warmup: int, steps: int, cuda: bool
) -> tuple[dict[str, list[float]], list[float], list[float]]:
    """Alternate the policies' steps in ABBA order: (step seconds per policy, foveation
    shares of the foveated step, foveation ms per foveated step), warm-up steps left out."""
    times: dict[str, list[float]] = {"center": [], "none": []}
    shares: list[float] = []
    fov_ms: list[float] = []
    for i in range(warmup + steps):
        # ABBA order: neither policy always runs first (caches, turbo, the neighbours' load).
        for policy in ("center", "none") if i % 2 == 0 else ("none", "center"):
            runner = runners[policy]
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            losses = runner.step(i, images, targets)
            losses["loss"].item()  # host sync, as a logged step does
            dt = time.perf_counter() - t0
            phases = runner.timer.collect()
            if i >= warmup:
                times[policy].append(dt)
                if policy == "center":
                    shares.append(phases["loaded_to_foveated"] / phases["total"])
                    fov_ms.append(phases["loaded_to_foveated"])
    return times, shares, fov_ms


if __name__ == "__main__":
    main()
