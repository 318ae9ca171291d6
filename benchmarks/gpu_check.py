"""One prepared GPU check: every CUDA path of fovea-ray measured in one short run.

Five parts, each against a baseline from the same run, printed as one table (part,
figure, value, baseline, ratio, target, met?) and written as JSON with ``--json PATH``:

1. foveation: Gpix/s of the Triton kernel against the torch path at 8 x 3 x 800² and
   64 x 3 x 800² fp32, and their max abs difference (target >= 10 Gpix/s);
2. taps: R101-FPN, 800 x 800 canvas, bf16 autocast, batch 8: untapped forward against
   the 33 bottlenecks + layer3.22.bn3 with mean/median/max (overhead, target <= 10 %),
   backbone-only to layer3 (speedup), and the taps in bf16 against fp32 (max relative
   difference of the statistics);
3. actor: images/s of :meth:`fovea_ray.pipeline.actor.ChunkExtractor.process` (decode ->
   foveate -> render -> forward -> reduce) on pre-read JPEG bytes, against the model-only
   loop (:meth:`ChunkExtractor.forward`) on the same canvases (target ratio >= 0.9);
4. solver: the full permutation test, P = 10 000 at n = 5000, d = 2048 on the device,
   against P = 1000 on the CPU, in this process (target <= 60 s);
5. training: the R101 Mask R-CNN step at 800 px with AMP, foveated against unfoveated
   (ABBA order): images/s and the foveation share of the step (target < 3 %).

It imports only torch, torchvision, numpy (and Triton, scikit-learn where a part needs
them): no Ray, Zarr or pycocotools, so it runs on a bare CUDA machine. A part that fails
prints its error in the table and the others still run; the exit code is 1 when a part
errored (not when a target is missed). ``--quick`` runs every part on the same code path at
small sizes (on the CPU: < 2 minutes); Triton then runs under its CPU interpreter at a
tiny size, for correctness only.

    python benchmarks/gpu_check.py --json gpu_check.json        # on the GPU machine (< 6 min)
    python benchmarks/gpu_check.py --device cpu --quick         # CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The sibling benchmark scripts hold the measurement code this check reuses.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_foveation import _time as time_call  # noqa: E402  (synchronised wall time of one call)
from bench_taps import BOTTLENECKS, STATS, realistic_heads  # noqa: E402

PPD = 30.0  #: pixels per degree of every foveation here (the benchmarks' setting)


@dataclass(frozen=True)
class Sizes:
    """The sizes of one run: the full GPU check, or its quick smoke version."""

    arch: str = "resnet101"
    fov_shapes: tuple[tuple[int, int], ...] = ((8, 800), (64, 800))  # (batch, side)
    fov_repeats: int = 5
    triton_interp_shape: tuple[int, int] = (1, 48)  # CPU only: Triton's interpreter is ~1000x slower
    canvas: int = 800
    tap_batch: int = 8
    tap_repeats: int = 5
    actor_images: int = 64
    actor_batch: int = 8
    actor_image_hw: tuple[int, int] = (480, 640)  # COCO-like
    actor_repeats: int = 3
    perm_n: int = 5000
    perm_channels: int = 1024  # d = 2 x channels (mean, max)
    perm_device_p: int = 10_000
    perm_cpu_p: int = 1000
    train_arch: str = "resnet101"
    train_size: int = 800
    train_batch: int = 4
    train_warmup: int = 2
    train_steps: int = 6


QUICK = Sizes(
    arch="resnet101",
    fov_shapes=((2, 160), (4, 160)),
    fov_repeats=2,
    canvas=160,
    tap_batch=2,
    tap_repeats=2,
    actor_images=4,
    actor_batch=2,
    actor_image_hw=(120, 160),
    actor_repeats=2,
    perm_n=200,
    perm_channels=32,
    perm_device_p=20,
    perm_cpu_p=10,
    train_arch="resnet50",
    train_size=160,
    train_batch=2,
    train_warmup=1,
    train_steps=2,
)


@dataclass
class Row:
    """One line of the table."""

    part: str
    figure: str
    value: float | None = None
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Check:
    """The rows and per-part timings of a run."""

    device: torch.device
    sizes: Sizes
    quick: bool
    rows: list[Row] = field(default_factory=list)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, *args: Any, **kw: Any) -> None:
        self.rows.append(Row(*args, **kw))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    """Release what the previous part left, so each part starts with the device's memory."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on ``device`` (the actors' CUDA precision; also exercised on the CPU)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------- 1. foveation
def part_foveation(c: Check) -> None:
    """Gpix/s of the Triton kernel and the torch path, and their max abs difference."""
    from fovea_ray.foveation import Foveator, _triton

    dev, s = c.device, c.sizes
    gen = torch.Generator().manual_seed(0)
    ref = Foveator(pixels_per_degree=PPD, backend="torch")
    fast = Foveator(pixels_per_degree=PPD, backend="triton")
    compiled = dev.type == "cuda" and _triton.available()

    def batch(b: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(b, 3, side, side, generator=gen).to(dev)
        fix = (torch.rand(b, 2, generator=gen) * (side - 1)).to(dev)
        return x, fix

    def gpix(fn: Callable[[], object], pixels: int) -> float:
        time_call(fn, dev)  # warm-up: kernel compilation, tables, allocations
        return pixels / statistics.median(time_call(fn, dev) for _ in range(s.fov_repeats)) / 1e9

    for b, side in s.fov_shapes:
        x, fix = batch(b, side)
        shape = f"{b}x3x{side}² fp32"
        torch_rate = gpix(lambda x=x, fix=fix: ref(x, fix), b * side * side)
        if compiled:
            rate = gpix(lambda x=x, fix=fix: fast(x, fix), b * side * side)
            c.add("foveation", f"Gpix/s triton {shape}", rate, torch_rate, rate / torch_rate, ">= 10", rate >= 10)
            diff = (fast(x, fix) - ref(x, fix)).abs().max().item()
            c.add("foveation", f"max |triton - torch| {shape}", diff, target="<= 1e-5", met=diff <= 1e-5)
        else:
            c.add("foveation", f"Gpix/s torch {shape}", torch_rate, target=">= 10", met=torch_rate >= 10,
                  note="triton skipped (no CUDA)")  # fmt: skip
        del x, fix
        _free(dev)
    if not compiled and _triton_importable():
        # No GPU: the same kernel under Triton's CPU interpreter, at a tiny size (correctness).
        b, side = s.triton_interp_shape
        x, fix = batch(b, side)
        with _env("TRITON_INTERPRET", "1"):
            diff = (fast(x.cpu(), fix.cpu()) - ref(x.cpu(), fix.cpu())).abs().max().item()
        c.add("foveation", f"max |triton - torch| {b}x3x{side}² (interpreter)", diff, target="<= 1e-5",
              met=diff <= 1e-5)  # fmt: skip


# ---------------------------------------------------------------------------- 2. taps
def _study_layer(arch: str) -> str:
    # One home for the study layer per architecture: the pipeline's defaults.
    from fovea_ray.pipeline.extract import DEFAULT_LAYERS

    return DEFAULT_LAYERS[arch][0]


def part_taps(c: Check) -> None:
    """Overhead of the taps, backbone-only speedup, and bf16 against fp32 statistics."""
    from fovea_ray.model import build_model
    from fovea_ray.taps import Tapper

    dev, s = c.device, c.sizes
    layer3 = _study_layer(s.arch)
    model = build_model(s.arch, canvas=(s.canvas, s.canvas), device=dev)
    realistic_heads(model)
    images = torch.rand(s.tap_batch, 3, s.canvas, s.canvas, generator=torch.Generator().manual_seed(0)).to(dev)
    image_list = list(images)
    # masks=True: the tapped pass does the untapped pass's work (masks included), plus taps.
    tapped = Tapper(model, [BOTTLENECKS, layer3], STATS, masks=True)
    body = Tapper(model, layer3, STATS, backbone_only=True)
    n_layers = len(tapped.layers)

    # The actors' precision: bf16 autocast on CUDA, fp32 on the CPU (where bf16 autocast of
    # the heads is ~30x slower than fp32; the bf16 statistics are compared below anyway).
    bf16 = dev.type == "cuda"

    def untapped() -> None:
        with torch.inference_mode(), _autocast(dev, bf16):
            model(image_list)

    def with_taps() -> None:
        with torch.inference_mode(), _autocast(dev, bf16):
            tapped(images)

    def backbone_only() -> None:
        with torch.inference_mode(), _autocast(dev, bf16):
            body(images)

    variants = {"untapped": untapped, "tapped": with_taps, "backbone": backbone_only}
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(s.tap_repeats):  # interleaved, so drifting load hits every variant alike
        for k, fn in variants.items():
            times[k].append(time_call(fn, dev))
    best = {k: min(v) for k, v in times.items()}  # the least disturbed run (timeit's advice)
    ms = {k: 1e3 * v for k, v in best.items()}
    precision = "bf16" if bf16 else "fp32"
    setup = f"{s.arch} {s.tap_batch}x3x{s.canvas}² {precision}; best of {s.tap_repeats} interleaved repeats"
    overhead = ms["tapped"] / ms["untapped"]
    c.add("taps", f"{n_layers} taps forward ms (ratio: 1 + overhead)", ms["tapped"], ms["untapped"], overhead,
          "ratio <= 1.10", overhead <= 1.10, note=f"baseline: untapped model(images); {setup}")  # fmt: skip
    speed = ms["untapped"] / ms["backbone"]
    c.add("taps", "backbone-only to layer3 ms (ratio: speedup)", ms["backbone"], ms["untapped"], speed,
          note="baseline: the untapped full model; ratio = baseline / value")  # fmt: skip

    # The same maps in bf16 and fp32. Backbone-only: a tap's values do not depend on the
    # heads, which would only add time (bf16 heads are slow on the CPU).
    every = Tapper(model, [BOTTLENECKS, layer3], STATS, backbone_only=True)
    with torch.inference_mode():
        with _autocast(dev):
            half = every(images).taps
        with _autocast(dev, enabled=False):
            full = every(images).taps
    every.close()
    rel = max(((half[k] - full[k]).abs().max() / full[k].abs().max().clamp_min(1e-12)).item() for k in full)
    c.add("taps", "bf16 vs fp32 stats max rel diff", rel,
          note="max over layers of max|bf16 - fp32| / max|fp32|")  # fmt: skip
    tapped.close()
    body.close()


# ---------------------------------------------------------------------------- 3. actor
def _coco_like(root: Path, n: int, hw: tuple[int, int]) -> tuple[list[bytes], list[dict], dict]:
    """A synthetic COCO-format set: (JPEG bytes, one anchor annotation per image, the json)."""
    from fovea_ray.data.synthetic import make_synthetic_coco

    make_synthetic_coco(root, n_images=n, seed=0, image_size=hw)
    coco = json.loads((root / "instances.json").read_text())
    first: dict[int, dict] = {}
    for ann in coco["annotations"]:
        first.setdefault(ann["image_id"], ann)
    images = sorted(coco["images"], key=lambda im: im["id"])
    blobs = [(root / "images" / im["file_name"]).read_bytes() for im in images]
    return blobs, [first[im["id"]] for im in images], coco


def part_actor(c: Check) -> None:
    """The actor's whole step (``process``) against its model-only loop (``forward``)."""
    from fovea_ray.pipeline.actor import ChunkExtractor, ModelSpec

    dev, s = c.device, c.sizes
    layer3 = _study_layer(s.arch)
    with tempfile.TemporaryDirectory() as tmp:
        blobs, anns, _ = _coco_like(Path(tmp) / "data", s.actor_images, s.actor_image_hw)
    # Type-1 samples: fixation on the anchor object's centre, a canvas-sized window around it.
    bboxes = np.array([a["bbox"] for a in anns], dtype=np.float64)
    fixations = bboxes[:, :2] + bboxes[:, 2:] / 2
    windows = np.concatenate([np.round(fixations - s.canvas / 2), np.full((len(anns), 2), s.canvas)], 1)
    windows = windows.astype(np.int64)
    cats = [int(a["category_id"]) for a in anns]
    spec = ModelSpec(
        arch=s.arch,
        weights=None,
        canvas=(s.canvas, s.canvas),
        seed=0,
        layers=(layer3,),
        channels=(1024,),
        stats=STATS,
        backbone_only=False,
        foveation={"pixels_per_degree": PPD},
        device=str(dev),
        precision="auto",  # bf16 autocast on CUDA, fp32 on the CPU: what a run does
        batch_size=s.actor_batch,
    )
    ex = ChunkExtractor(spec)
    no_errors = [""] * len(blobs)

    def whole() -> None:
        res = ex.process(blobs, no_errors, fixations, windows, bboxes, cats)
        bad = [e for e in res.errors if e]
        if bad:
            raise RuntimeError(f"process recorded {len(bad)} failed samples, first: {bad[0]}")

    # The model-only loop's input: the same canvases, decoded and rendered beforehand.
    canvases = []
    for lo in range(0, len(blobs), s.actor_batch):
        sl = slice(lo, lo + s.actor_batch)
        canvases.append(ex._render([ex._decode(b) for b in blobs[sl]], fixations[sl], windows[sl]))

    def model_only() -> None:
        for batch in canvases:
            ex.forward(batch)

    whole()
    model_only()
    t_whole, t_model = [], []
    for _ in range(s.actor_repeats):
        t_whole.append(time_call(whole, dev))
        t_model.append(time_call(model_only, dev))
    ips, base = len(blobs) / min(t_whole), len(blobs) / min(t_model)
    c.add("actor", "process() img/s", ips, base, ips / base, "ratio >= 0.9", ips / base >= 0.9,
          note=f"baseline: forward() on pre-rendered canvases; {ex.precision}, {s.actor_images} JPEGs "
          f"{s.actor_image_hw[1]}x{s.actor_image_hw[0]}, batch {s.actor_batch}")  # fmt: skip


# ---------------------------------------------------------------------------- 4. solver
def run_full_permutation(X: np.ndarray, y: np.ndarray, train: np.ndarray, n_permutations: int, device: str):
    """The full permutation test in this process (the default in-process executor, no Ray)."""
    from fovea_ray.stats.permutation import full_permutation_null

    return full_permutation_null(X, y, train, n_permutations=n_permutations, seed=0, test_size=0.5, device=device)


def part_solver(c: Check) -> None:
    """Full permutation on the device against the CPU, activation-like data."""
    from fovea_ray.stats import _seeding
    from fovea_ray.stats.simulate import activation_like

    dev, s = c.device, c.sizes
    X, y = activation_like(s.perm_n, s.perm_channels, 0, shift=0.05, shifted_channels=min(64, s.perm_channels))
    train, _ = _seeding.stratified_split(y, 0.5, _seeding.stream(0, _seeding.SPLIT))
    t0 = time.perf_counter()
    on_dev = run_full_permutation(X, y, train, s.perm_device_p, dev.type)
    _sync(dev)
    t_dev = time.perf_counter() - t0
    t0 = time.perf_counter()
    on_cpu = run_full_permutation(X, y, train, s.perm_cpu_p, "cpu")
    t_cpu = time.perf_counter() - t0
    fits_dev, fits_cpu = on_dev.n_permutations + 1, on_cpu.n_permutations + 1
    # The CPU baseline at the device's P, from its time per refit (refits are independent).
    cpu_at_p = t_cpu / fits_cpu * fits_dev
    size = f"n={s.perm_n} d={X.shape[1]}"
    c.add("solver", f"full permutation s, P={on_dev.n_permutations} on {dev.type}", t_dev, cpu_at_p, cpu_at_p / t_dev,
          "<= 60", t_dev <= 60,
          note=f"{size}; baseline: CPU P={on_cpu.n_permutations} took {t_cpu:.1f} s, scaled per refit; "
          f"converged {on_dev.converged_fraction:.3f}")  # fmt: skip
    # Labelling 0 is the true labels on the observed split in both runs: the same fit.
    diff = abs(on_dev.observed_accuracy - on_cpu.observed_accuracy)
    c.add("solver", f"|observed accuracy {dev.type} - cpu|", diff, target="<= 0.002", met=diff <= 0.002,
          note=f"observed accuracy {on_dev.observed_accuracy:.4f}")  # fmt: skip


# ---------------------------------------------------------------------------- 5. training
def _training_batch(root: Path, coco: dict) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]], Any]:
    """uint8 images and Mask R-CNN targets from COCO json, without pycocotools (absent on the
    GPU machine): polygons are rasterised with Pillow."""
    from PIL import Image, ImageDraw

    from fovea_ray.train.dataset import LabelMap

    lm = LabelMap.for_categories(sorted(c["id"] for c in coco["categories"]))
    labels = lm.labels()
    images, targets = [], []
    for im in sorted(coco["images"], key=lambda im: im["id"]):
        arr = np.asarray(Image.open(root / "images" / im["file_name"]).convert("RGB"))
        h, w = arr.shape[:2]
        boxes, cls, masks = [], [], []
        for ann in (a for a in coco["annotations"] if a["image_id"] == im["id"]):
            x, y, bw, bh = ann["bbox"]
            canvas = Image.new("L", (w, h), 0)
            for poly in ann["segmentation"]:
                ImageDraw.Draw(canvas).polygon([float(v) for v in poly], fill=1)
            boxes.append((x, y, x + bw, y + bh))
            cls.append(labels[int(ann["category_id"])])
            masks.append(np.asarray(canvas))
        images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
        targets.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(cls, dtype=torch.int64),
                "masks": torch.from_numpy(np.stack(masks)),
            }
        )
    return images, targets, lm


def part_training(c: Check) -> None:
    """The Mask R-CNN training step, foveated against unfoveated (bench_train's ABBA loop)."""
    from bench_train import abba_steps, build_runners

    dev, s = c.device, c.sizes
    cuda = dev.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        _, _, coco = _coco_like(root, s.train_batch, (s.train_size, s.train_size))
        images, targets, lm = _training_batch(root, coco)
        runners = build_runners(
            root, tmp, lm.num_classes, images, dev, arch=s.train_arch, batch=s.train_batch, amp=cuda, ppd=PPD,
            trainable_layers=3,
        )  # fmt: skip
        times, shares, fov_ms = abba_steps(
            runners, images, targets, warmup=s.train_warmup, steps=s.train_steps, cuda=cuda
        )
    ips = {k: s.train_batch / statistics.median(v) for k, v in times.items()}
    setup = f"{s.train_arch} {s.train_batch}x{s.train_size}² AMP {'on' if cuda else 'off'}, medians of {s.train_steps}"
    c.add("training", "foveated step img/s", ips["center"], ips["none"], ips["center"] / ips["none"],
          note=f"baseline: unfoveated step; {setup}")  # fmt: skip
    share = statistics.median(shares)
    c.add("training", "foveation share of the step %", 100 * share, target="< 3", met=share < 0.03,
          note=f"{statistics.median(fov_ms):.1f} ms per step")  # fmt: skip


PARTS: dict[str, Callable[[Check], None]] = {
    "foveation": part_foveation,
    "taps": part_taps,
    "actor": part_actor,
    "solver": part_solver,
    "training": part_training,
}


# ---------------------------------------------------------------------------- output
def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0 or (1e-3 <= abs(v) < 1e5):
        return f"{v:.4g}"
    return f"{v:.2e}"


def table(rows: list[Row]) -> str:
    """The rows as one fixed-width text table (notes on the line below their row)."""
    cols = ["part", "figure", "value", "baseline", "ratio", "target", "met?"]
    cells = [
        [
            r.part,
            r.figure,
            _fmt(r.value),
            _fmt(r.baseline),
            _fmt(r.ratio),
            r.target or "-",
            {True: "yes", False: "NO", None: "-"}[r.met] if r.figure != "error" else "ERROR",
        ]
        for r in rows
    ]
    widths = [max(len(cols[i]), *(len(c[i]) for c in cells)) if cells else len(cols[i]) for i in range(len(cols))]
    line = lambda c: "  ".join(x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths)))  # noqa: E731
    out = [line(cols), "-" * len(line(cols))]
    for r, c in zip(rows, cells):
        out.append(line(c))
        if r.note:
            out.append(" " * (widths[0] + 2) + "  " + r.note)
    return "\n".join(out)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {platform.machine()})"


def run(device: torch.device, quick: bool, parts: list[str]) -> Check:
    """Run the chosen parts; each failure becomes an error row and the others still run."""
    c = Check(device, QUICK if quick else Sizes(), quick)
    for name in parts:
        t0 = time.perf_counter()
        error = None
        try:
            PARTS[name](c)
        except Exception as exc:  # noqa: BLE001 - one broken part must not hide the others
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            c.add(name, "error", note=error)
            traceback.print_exc(file=sys.stderr)
        finally:
            _free(device)
        elapsed = time.perf_counter() - t0
        c.parts[name] = {"elapsed_s": round(elapsed, 2), "error": error}
        print(f"[{name}] {elapsed:.1f} s{' ERROR ' + error if error else ''}", file=sys.stderr, flush=True)
    return c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="every part at small sizes (the CPU smoke run)")
    ap.add_argument("--json", type=Path, default=None, help="also write the table here as JSON")
    ap.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS), help="default: all")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA device; use --device cpu", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    t0 = time.perf_counter()
    c = run(device, args.quick, args.parts)
    wall = time.perf_counter() - t0
    load = os.getloadavg()
    head = (
        f"gpu_check{' --quick' if args.quick else ''}: {_device_name(device)}; torch {torch.__version__}; "
        f"wall {wall:.0f} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(head)
    print("parts (s): " + ", ".join(f"{k} {v['elapsed_s']:.1f}" for k, v in c.parts.items()))
    print(table(c.rows))
    if args.json:
        doc = {
            "device": _device_name(device),
            "device_type": device.type,
            "quick": args.quick,
            "torch": torch.__version__,
            "wall_s": round(wall, 2),
            "load_average": list(load),
            "parts": c.parts,
            "rows": [
                {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(r).items()}
                for r in c.rows
            ],  # fmt: skip
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if any(p["error"] for p in c.parts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
