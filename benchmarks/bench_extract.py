"""Extraction pipeline efficiency: end-to-end Ray throughput against the model-only loop.

``throughput`` (default). Same device, model, batch size, layers and statistics:

- **model-only loop** (the baseline): the tapped forward (:class:`fovea_ray.taps.Tapper`,
  built exactly as the pipeline's actor builds it) on pre-decoded, pre-foveated,
  pre-rendered canvases, batch after batch in a tight loop, with as many torch threads
  as the pipeline's actors get together. Timed twice, before and after the pipeline, and averaged,
  so that both see the same machine load on average.
- **end to end**: :func:`fovea_ray.pipeline.extract` through a local Ray: read bytes →
  decode → foveate → crop/paste → tapped forward → reduce → pixel controls → Zarr store.
  Reported two ways: *sustained* (the slope of samples stored vs time over the chunks
  after the first: the rate a long run settles to) and *whole run* (wall time including
  Ray Data start-up, actor start-up and the model build, which a long run amortises).

The efficiency printed is sustained end-to-end images/s divided by model-only images/s.
On a shared machine wall-clock rates depend on how the OS splits the cores between
competing processes (a run with more processes gets a larger share), so the script also
prints a load-independent figure: CPU seconds per image of the model-only loop divided by
CPU seconds per image of the whole pipeline (every process of the local Ray session:
driver, GCS, raylet, read/model/sink workers), read from /proc, sustained (the slope of
CPU seconds vs samples stored after the first chunk) and for the whole run. On a loaded machine multi-threaded
torch burns CPU spin-waiting for descheduled threads, which inflates CPU seconds
unevenly; ``--torch-threads 1`` (both sides) makes the CPU-time comparison exact.

``memory``: the driver's peak RSS (``ru_maxrss`` of the driver process itself; Ray's
workers are separate processes) for a run of 100 and one of 1000 samples with a cheap
network configuration, each in a fresh driver process.

    python benchmarks/bench_extract.py                                # synthetic, R101, canvas 256
    python benchmarks/bench_extract.py --data coco128 --canvas 640 --n 16
    python benchmarks/bench_extract.py memory
    python benchmarks/bench_extract.py omp          # OpenMP wait policy x torch threads

``omp``: the tapped forward alone with OpenMP's active (default) and passive waiting, 1 and
2 torch threads, each in a fresh process (the policy is read when OpenMP starts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The pipeline's model actors run with OMP_WAIT_POLICY=PASSIVE (fovea_ray.pipeline.extract.
# _actor_env); the model-only loop gets the same, set before torch is imported, so that
# both sides run the forward under the same OpenMP settings.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
COCO128 = REPO.parent / "shared" / "data" / "coco128"


def _machine() -> str:
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except Exception:  # noqa: BLE001
        gpu = "?"
    return f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), {gpu}"


class TreeCPU:
    """CPU seconds (user + system) used by a process and all its descendants, from /proc.

    Sampled in a background thread so that processes which exit during the run (Ray Data
    ends its actors when a dataset finishes) still count up to their last sample.
    """

    def __init__(self, root: int, interval: float = 0.2) -> None:
        import threading

        self.root, self.interval = root, interval
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start = self._snapshot()
        self.last = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _snapshot(self) -> dict[int, float]:
        stats: dict[int, tuple[int, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.tick)
        tree, frontier = {self.root}, [self.root]
        while frontier:
            parent = frontier.pop()
            for pid, (ppid, _) in stats.items():
                if ppid == parent and pid not in tree:
                    tree.add(pid)
                    frontier.append(pid)
        return {pid: stats[pid][1] for pid in tree if pid in stats}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid, cpu in self._snapshot().items():
                self.last[pid] = max(cpu, self.last.get(pid, 0.0))

    def now(self) -> float:
        """CPU seconds used so far (a fresh sample)."""
        for pid, cpu in self._snapshot().items():
            self.last[pid] = max(cpu, self.last.get(pid, 0.0))
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.last.items())

    def per_process(self) -> dict[int, float]:
        """CPU seconds so far per process id."""
        self.now()
        return dict(self.last)

    @staticmethod
    def name(pid: int) -> str:
        """A short label for a process of the run (the driver, a Ray daemon, a Ray worker's task)."""
        if pid == os.getpid():
            return "driver (Ray Data executor)"
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return "(exited)"
        if cmd.startswith("ray::"):
            return cmd.split(" ")[0]
        for daemon in ("gcs_server", "raylet", "dashboard", "log_monitor", "monitor.py", "runtime_env"):
            if daemon in cmd:
                return daemon
        return cmd[:40]

    def stop(self) -> float:
        """CPU seconds used since construction, by every process of the tree."""
        self._stop.set()
        self._thread.join()
        for pid, cpu in self._snapshot().items():
            self.last[pid] = max(cpu, self.last.get(pid, 0.0))
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.last.items())


def make_manifest(data: str, n: int, canvas: int, ppd: float, ecc_band: tuple[float, float], workdir: Path):
    """A real manifest (``build_manifest``) over coco128 or a synthetic mini-COCO, ``n`` samples."""
    from fovea_ray.data.manifest import build_manifest, write_manifest

    if data == "coco128":
        if not COCO128.is_dir():
            sys.exit(f"{COCO128} is absent; use --data synthetic")
        ann, images = COCO128 / "annotations" / "instances_train2017.json", COCO128 / "train2017"
    else:
        from fovea_ray.data.synthetic import make_synthetic_coco

        root = make_synthetic_coco(workdir / "coco", n_images=max(2 * n, 40), seed=0)
        ann, images = root / "instances.json", root / "images"
    df = build_manifest(
        ann, images, n_per_type=(n + 1) // 2, seed=0, canvas=canvas, pixels_per_degree=ppd, ecc_band=ecc_band
    )
    if len(df) < n:
        print(f"note: the data allow {len(df)} balanced samples (asked for {n})")
    df = df.iloc[:n].reset_index(drop=True)
    df["sample"] = np.arange(len(df))
    return write_manifest(df, workdir / "manifest.parquet", config={"bench": True})


def model_only(manifest: Path, args, threads: int, repeats: int = 1) -> list[float]:
    """images/s of the tapped forward alone on pre-rendered canvases (one value per repeat)."""
    import torch

    from fovea_ray.data.manifest import read_manifest
    from fovea_ray.data.render import decode_image, render_batch
    from fovea_ray.foveation import Foveator
    from fovea_ray.model import build_model
    from fovea_ray.taps import Tapper

    torch.set_num_threads(threads)
    df = read_manifest(manifest)
    canvas = tuple(int(v) for v in df["canvas"].iloc[0])
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    fov = Foveator(pixels_per_degree=float(df["pixels_per_degree"].iloc[0]))
    canvases = []
    for i in range(len(df)):  # untimed: decode, foveate, crop and paste
        img = decode_image(Path(df["image_uri"].iloc[i]).read_bytes(), device=device)
        canvases.append(
            render_batch([img], [df["fixation_xy"].iloc[i]], [df["window_xywh"].iloc[i]], canvas, fov, device=device)
        )
    x = torch.cat(canvases)
    model = build_model(args.arch, None, canvas, seed=0, device=device)
    tapper = Tapper(model, args.layers, args.stats, backbone_only=args.backbone_only)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else None

    def run(batch):
        if amp is None:
            return tapper(batch)
        with amp:
            return tapper(batch)

    run(x[: args.batch_size])  # warm-up (allocator, first-call overheads)
    rates, cpu = [], []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for lo in range(0, len(x), args.batch_size):
            run(x[lo : lo + args.batch_size])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rates.append(len(x) / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) / len(x))
    tapper.close()
    return rates, cpu


def end_to_end(manifest: Path, args, workdir: Path):
    from fovea_ray.pipeline import extract

    out = workdir / "store.zarr"
    shutil.rmtree(out, ignore_errors=True)
    meter = TreeCPU(os.getpid()) if os.path.isdir("/proc") else None
    marks: list[tuple[int, float]] = []  # (samples so far, CPU seconds so far) at each stored chunk

    per_pid: list[dict[int, float]] = []

    def on_chunk(info: dict) -> None:
        done = (marks[-1][0] if marks else 0) + info["n"]
        marks.append((done, meter.now() if meter else float("nan")))
        if meter:
            per_pid[:] = per_pid[:1] + [meter.per_process()]

    t0 = time.perf_counter()
    summary = extract(
        manifest,
        out,
        weights=None,
        arch=args.arch,
        layers=args.layers,
        stats=args.stats,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        backbone_only=args.backbone_only,
        device=args.device,
        num_actors=args.num_actors,
        torch_threads=args.torch_threads,
        progress=False,
        on_chunk=on_chunk,
    )
    wall = time.perf_counter() - t0
    cpu = meter.stop() if meter else float("nan")
    assert summary.complete and summary.failed == 0, summary.format()
    # Sustained CPU per image: the slope of CPU seconds vs samples stored, over the chunks after
    # the first (start-up excluded; robust to one chunk's late arrival).
    pts = marks[1:] if len(marks) >= 3 else marks
    steady = float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0]) if len(pts) > 1 else float("nan")
    if len(per_pid) == 2 and len(marks) > 1:
        by_name: dict[str, float] = {}
        for pid, used in per_pid[1].items():
            name = TreeCPU.name(pid)
            by_name[name] = by_name.get(name, 0.0) + used - per_pid[0].get(pid, 0.0)
        images = marks[-1][0] - marks[0][0]
        print(
            "sustained CPU seconds per image by process:",
            ", ".join(f"{k} {v / images:.3f}" for k, v in sorted(by_name.items(), key=lambda kv: -kv[1]) if v > 0),
        )
    return summary, wall, cpu / max(summary.done, 1), steady


def throughput(args) -> None:
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    from fovea_ray.pipeline.extract import _cluster_plan

    _, actors, threads = _cluster_plan(args.device, args.num_actors, args.torch_threads)
    # The model-only loop gets every core the pipeline's actors use together.
    loop_threads = min(os.cpu_count() or 1, actors * threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest = make_manifest(args.data, args.n, args.canvas, args.ppd, tuple(args.ecc_band), work)
        before, cpu_before = model_only(manifest, args, loop_threads)
        summary, wall, cpu_e2e, cpu_steady = end_to_end(manifest, args, work)
        after, cpu_after = model_only(manifest, args, loop_threads)
    base = float(np.mean(before + after))
    cpu_base = float(np.mean(cpu_before + cpu_after))
    sustained = summary.steady_images_per_s
    whole = summary.done / wall
    mode = "backbone-only" if args.backbone_only else "full model"
    print(
        f"machine: {_machine()}; pipeline: {actors} actor(s) x {threads} torch threads; "
        f"model-only loop: {loop_threads} torch threads; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    print(
        f"config: {args.data}, {summary.done} samples, {args.arch} ({mode}), canvas {args.canvas}, "
        f"layers {args.layers}, stats {args.stats}, batch {args.batch_size}, chunk {args.chunk_size}"
    )
    print(f"model-only loop        : {base:8.3f} images/s  (before {before[0]:.3f}, after {after[0]:.3f})")
    print(
        f"end to end, sustained  : {sustained:8.3f} images/s  (after the first chunk, "
        f"which arrived at {summary.first_chunk_s:.1f} s)"
    )
    print(f"end to end, whole run  : {whole:8.3f} images/s  ({wall:.1f} s incl. Ray/actor start-up and model build)")
    print(f"efficiency (sustained end to end / model-only): {sustained / base:.3f}")
    print(f"whole-run ratio (incl. start-up)             : {whole / base:.3f}")
    print(
        f"tapped forward, wall seconds per image: {1 / base:.3f} in the model-only loop, "
        f"{summary.forward_seconds / summary.done:.3f} inside a pipeline actor"
    )
    print(
        f"model stage: {100 * summary.forward_share:.1f}% of its time in the tapped forward (the rest: decode, "
        f"foveate, crop/paste, pixel controls, anchor scores); store writes {summary.write_seconds / summary.done:.4f} "
        "s per image in the sink tasks"
    )
    print(
        f"CPU seconds per image: model-only {cpu_base:.2f}; end to end {cpu_steady:.2f} sustained, "
        f"{cpu_e2e:.2f} whole run (every process of the run: driver, GCS, raylet, read/model/sink workers)"
    )
    print(
        f"CPU-time efficiency, sustained (model-only / end-to-end CPU per image; independent of machine "
        f"load): {cpu_base / cpu_steady:.3f}"
    )
    print(f"CPU-time ratio, whole run (incl. Ray start-up, probe, actor start-up): {cpu_base / cpu_e2e:.3f}")
    ray.shutdown()


MEMORY_DRIVER = r"""
import json, resource, sys, time
import numpy as np
from fovea_ray.data.manifest import read_manifest, write_manifest
from fovea_ray.pipeline import extract
base = read_manifest(sys.argv[1])
n = int(sys.argv[2])
df = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)  # the same images, n sample rows
df["sample"] = np.arange(n)
path = write_manifest(df, sys.argv[3] + ".parquet", config={})
t0 = time.perf_counter()
s = extract(path, sys.argv[3], arch="resnet50", layers=["backbone.body.layer1.0.bn3"], stats=["mean", "max"],
            chunk_size=50, batch_size=25, backbone_only=True, progress=False)
print(json.dumps({"n": n, "done": s.done, "seconds": time.perf_counter() - t0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def memory(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest = make_manifest("synthetic", 40, 160, 16.0, (9.5, 12.0), work)
        rows = []
        for n in args.sizes:
            out = subprocess.run(
                [sys.executable, "-c", MEMORY_DRIVER, str(manifest), str(n), str(work / f"s{n}.zarr")],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if out.returncode != 0:
                sys.exit(out.stderr[-3000:])
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"machine: {_machine()}; driver peak RSS (ru_maxrss of the driver process), resnet50 backbone-only, "
        "layer1.0.bn3, canvas 160, chunk 50"
    )
    for r in rows:
        print(
            f"  {r['n']:6d} samples: peak RSS {r['peak_rss_mib']:7.1f} MiB  ({r['done']} done in {r['seconds']:.1f} s)"
        )
    ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"  ratio of peak RSS ({rows[-1]['n']} vs {rows[0]['n']} samples): {ratio:.3f}")


OMP_LOOP = r"""
import os, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
from fovea_ray.model import build_model
from fovea_ray.taps import Tapper
tapper = Tapper(build_model("resnet101", None, (256, 256), seed=0), ["backbone.body.layer3.22.bn3"])
x = torch.rand(8, 3, 256, 256, generator=torch.Generator().manual_seed(0))
tapper(x[:4])
w0, c0 = time.perf_counter(), time.process_time()
for lo in (0, 4, 0, 4):
    tapper(x[lo:lo + 4])
print((time.perf_counter() - w0) / 16, (time.process_time() - c0) / 16)
"""


def omp(args) -> None:
    """The tapped forward (R101, canvas 256, batch 4) per OpenMP wait policy and thread count."""
    print(f"machine: {_machine()}; load average {os.getloadavg()[0]:.1f}")
    for threads in (1, 2):
        for policy in ("ACTIVE", "PASSIVE"):
            env = {**os.environ, "OMP_WAIT_POLICY": policy}
            out = subprocess.run(
                [sys.executable, "-c", OMP_LOOP, str(threads)], env=env, capture_output=True, text=True, timeout=1800
            )
            wall, cpu = (float(v) for v in out.stdout.split()[-2:])
            print(f"  {threads} thread(s), OMP_WAIT_POLICY={policy:<7}: {wall:.3f} s/image wall, {cpu:.3f} CPU s/image")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", nargs="?", default="throughput", choices=["throughput", "memory", "omp"])
    p.add_argument("--data", default="synthetic", choices=["synthetic", "coco128"])
    p.add_argument("--n", type=int, default=32, help="samples")
    p.add_argument("--arch", default="resnet101")
    p.add_argument("--canvas", type=int, default=256)
    p.add_argument("--ppd", type=float, default=16.0)
    p.add_argument("--ecc-band", type=float, nargs=2, default=(9.5, 12.0))
    p.add_argument("--layers", nargs="+", default=["backbone.body.layer3.22.bn3"])
    p.add_argument("--stats", nargs="+", default=["mean", "median", "max"])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--chunk-size", type=int, default=4)
    p.add_argument("--backbone-only", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--num-actors", type=int, default=None, help="model actors (default: the pipeline's choice)")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch threads, the actor's and the model-only loop's (default: the pipeline's choice, "
        "all cores per actor); 1 makes CPU seconds comparable on a loaded machine (no spin-waiting)",
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="memory mode: sample counts")
    args = p.parse_args()
    if args.mode == "memory":
        memory(args)
    elif args.mode == "omp":
        omp(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
