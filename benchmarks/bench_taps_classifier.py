"""Cost of the on-device taps on a classifier, against its untapped forward pass.

Taps every bottleneck block of torchvision's ResNet-50 (``layer*.*``: 16 blocks,
mean/median/max per channel) in one full forward of a 224 px batch (default 8 images),
and compares it with the untapped ``model(normalise(images))``: the same input
preparation (the canvas is already 224 px, so the resize is the identity and both sides
normalise), the same forward, plus the 16 reductions and their one device-to-host copy.
Target: at most 15 % over the untapped forward on the CPU with two threads.

The variants interleave (A B A B ...) so that load drifting on a shared machine hits both
alike. Two estimates of the overhead: the ratio of the bests (the least disturbed runs),
and the median over the repeats of each pair's ratio (tapped over the untapped call just
before it), which a single lucky run does not move. Also printed: the time inside the tap
hooks (the reductions alone) and the host bytes the taps return.

Usage: ``python benchmarks/bench_taps_classifier.py [--model resnet50] [--batch 8] [--threads 2] [--repeats 11]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from fovea_ray.model import InputSpec, build_model
from fovea_ray.taps import Tapper

STATS = ("mean", "median", "max")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--layers", default="layer*.*", help="the taps (default: every bottleneck block)")
    parser.add_argument("--stats", default=",".join(STATS), help="per-channel statistics (default mean,median,max)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    model = build_model(model=args.model, canvas=224, device=device)
    spec = InputSpec.from_dict(model.fovea_ray_info["input"])
    images = torch.rand(args.batch, 3, *spec.size, generator=torch.Generator().manual_seed(0)).to(device)
    tapper = Tapper(model, args.layers, args.stats.split(","))
    hook = [0.0]
    reduce = tapper._reduce

    def timed_reduce(feature: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = reduce(feature)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        hook[0] += time.perf_counter() - start
        return out

    tapper._reduce = timed_reduce

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def untapped() -> None:
        with torch.inference_mode():
            model(spec(images)).cpu()

    def tapped() -> None:
        tapper(images)

    variants = {"untapped model(normalise(images))": untapped, f"{len(tapper.layers)} taps, full forward": tapped}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    hooks: list[float] = []
    for _ in range(args.warmup):
        for fn in variants.values():
            fn()
    for _ in range(args.repeats):
        for name, fn in variants.items():
            hook[0] = 0.0
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            if fn is tapped:
                hooks.append(hook[0])
    out = tapper(images)
    nbytes = sum(t.numel() * t.element_size() for t in out.taps.values())
    load = os.getloadavg()
    print(
        f"{args.model}, {len(tapper.layers)} taps ({args.layers}, {','.join(tapper.stats)}), "
        f"batch {args.batch} x 3 x {spec.size[0]} x "
        f"{spec.size[1]}, {args.threads} threads, {device}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"load average at the end (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset: libgomp spins after each parallel region)')}"
    )
    base, tap = (min(wall[k]) for k in variants)
    base_cpu, tap_cpu = (min(cpu[k]) for k in variants)
    for name in variants:
        print(f"  {name:40s} best {min(wall[name]):.3f} s  (all: {' '.join(f'{v:.3f}' for v in wall[name])})")
    print(f"  time inside the tap hooks (reductions), best {min(hooks):.3f} s")
    base_runs, tap_runs = (wall[k] for k in variants)
    paired = statistics.median(t / b for t, b in zip(tap_runs, base_runs, strict=True))
    print(
        f"overhead: {100 * (tap / base - 1):+.1f} % wall, "
        f"{100 * (tap_cpu / base_cpu - 1):+.1f} % CPU (ratio of bests); "
        f"{100 * (paired - 1):+.1f} % wall (median of paired ratios); "
        f"hooks {100 * min(hooks) / base:.1f} % of the untapped best (target <= 15 %)"
    )
    print(f"host bytes of the taps: {nbytes:,} (full maps would be {_full_bytes(model, images, tapper.layers):,})")


def _full_bytes(model, images, layers) -> int:
    sizes = []
    modules = dict(model.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda m, i, o: sizes.append(o.numel() * o.element_size())) for n in layers
    ]
    spec = InputSpec.from_dict(model.fovea_ray_info["input"])
    with torch.inference_mode():
        model(spec(images))
    for h in handles:
        h.remove()
    return sum(sizes)


if __name__ == "__main__":
    main()
