"""``extract``: the Ray Data pipeline from a manifest to a chunked, resumable Zarr store.

```
manifest rows ──(one row per pending store chunk of K samples)──▶ Ray Data
  read    CPU tasks     fetch encoded bytes (local or fsspec); failures recorded
  model   actor pool    decode → foveate → crop/paste → tapped forward → reduce
                        (num_gpus=1 per actor where GPUs exist, else CPU actors)
  sink    CPU tasks     write the chunk's rows of every array, then its done flags
driver: counts, failure reasons and status only (never activations)
```

Resume: the store's root attrs hold the run's canonical config (manifest checksum,
arch, weights checksum, layers, stats, canvas, foveation, seed, chunk size, precision).
Rerunning the same call processes only the chunks not marked done; a different config
is refused with the differences listed. Faults: Ray restarts dead actors and retries
tasks lost with their worker (Ray Data's defaults: ``max_restarts=-1``,
``max_task_retries=-1`` for the actor pool, ``max_retries=-1`` for tasks); a chunk is
marked done only after all its values are written, so any interruption costs at most
the chunks in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fovea_ray.errors import FoveaRayError, InputError
from fovea_ray.names import DEFAULT_LAYERS, DEFAULT_STATS
from fovea_ray.pipeline.summary import ExtractSummary

# DEFAULT_LAYERS / DEFAULT_STATS are re-exported from their one home, fovea_ray.names.
DEFAULT_CHUNK_SIZE = 32
DEFAULT_BATCH_SIZE = 8

#: Manifest columns that define the samples (image_uri is left out: moving the images to
#: object storage does not change the experiment).
_MANIFEST_KEY_COLUMNS = (
    "sample",
    "image_id",
    "file_name",
    "image_width",
    "image_height",
    "ann_id",
    "category_id",
    "bbox",
    "label",
    "fixation_xy",
    "eccentricity_deg",
    "window_xywh",
    "canvas",
    "pixels_per_degree",
)


def manifest_checksum(df: pd.DataFrame) -> str:
    """sha256 over the sample-defining manifest columns (stable across file copies)."""
    h = hashlib.sha256()
    for col in _MANIFEST_KEY_COLUMNS:
        if col not in df.columns:
            continue
        h.update(col.encode() + b"\0")
        values = df[col].to_numpy()
        if values.dtype == object and len(values) and isinstance(values[0], (list, tuple, np.ndarray)):
            h.update(np.ascontiguousarray(np.stack([np.asarray(v, dtype=np.float64) for v in values])).tobytes())
        elif values.dtype.kind in "biuf":
            h.update(np.ascontiguousarray(values.astype(np.float64)).tobytes())
        else:
            h.update("\0".join(str(v) for v in values).encode())
    return h.hexdigest()


def _weights_kind(weights: str | os.PathLike | None) -> str | None:
    """``None`` (random), ``"torchvision"``, or the checkpoint path as a string."""
    if weights is None:
        return None
    text = os.fspath(weights)
    if text.lower() in ("", "none"):
        return None
    if text.lower() == "torchvision":
        return "torchvision"
    if "://" not in text and not Path(text).expanduser().exists():
        raise InputError(
            f"{text}: weights file or checkpoint directory not found (use --weights none for random weights)"
        )
    return str(Path(text).expanduser().resolve()) if "://" not in text else text


def _versions() -> dict[str, str]:
    out = {}
    for name in ("fovea-ray", "torch", "torchvision", "ray", "zarr", "numpy", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    import platform

    out["python"] = platform.python_version()
    return out


def _load_manifest(manifest: str | os.PathLike | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if isinstance(manifest, pd.DataFrame):
        return manifest.reset_index(drop=True), "<DataFrame>"
    from fovea_ray.data.manifest import read_manifest

    return read_manifest(manifest).reset_index(drop=True), os.fspath(manifest)


def _manifest_geometry(df: pd.DataFrame, source: str) -> tuple[tuple[int, int], float]:
    if len(df) == 0:
        raise InputError(f"{source}: the manifest has no samples")
    if not np.array_equal(df["sample"].to_numpy(), np.arange(len(df))):
        raise InputError(f"{source}: the 'sample' column must be 0..N-1 in order")
    canvases = {tuple(int(v) for v in c) for c in df["canvas"]}
    if len(canvases) != 1:
        raise InputError(
            f"{source}: samples use {len(canvases)} different canvases {sorted(canvases)[:4]}; one run needs one"
        )
    ppds = set(np.round(df["pixels_per_degree"].to_numpy(np.float64), 9))
    if len(ppds) != 1:
        raise InputError(f"{source}: samples use different pixels_per_degree {sorted(ppds)[:4]}; one run needs one")
    (canvas,) = canvases
    return canvas, float(ppds.pop())


def _chunk_rows(df: pd.DataFrame, plan, chunks: Sequence[int]) -> list[dict[str, Any]]:
    """One Ray Data row per store chunk: what the read and model stages need, nothing more."""
    uri = df["image_uri"].astype(str).to_numpy()
    fix = np.stack(df["fixation_xy"].to_numpy()).astype(np.float64)
    win = np.stack(df["window_xywh"].to_numpy()).astype(np.int64)
    box = np.stack(df["bbox"].to_numpy()).astype(np.float64)
    cat = df["category_id"].to_numpy(np.int64)
    rows = []
    for i in chunks:
        a, b = plan.bounds(i)
        rows.append(
            {
                "chunk": int(i),
                "pad_to": plan.chunk_size,
                "image_uri": list(uri[a:b]),
                "fixation": fix[a:b],
                "window": win[a:b],
                "bbox": box[a:b],
                "category_id": cat[a:b],
            }
        )
    return rows


def _cluster_plan(device: str | None, num_actors: int | None, torch_threads: int | None) -> tuple[bool, int, int]:
    """(use_gpu, number of model actors, torch threads per CPU actor) from the cluster's resources."""
    import ray

    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
    if device is None:
        use_gpu = gpus > 0
    else:
        use_gpu = str(device).startswith("cuda")
    if num_actors is None:
        # GPU: one actor per GPU. CPU: a few fat actors (torch parallelises inside), and on
        # a small machine one, below the core count so the read and sink stages can run.
        num_actors = max(1, gpus) if use_gpu else max(1, cpus // 4)
    if num_actors < 1:
        raise InputError(f"num_actors must be >= 1, got {num_actors}")
    if use_gpu and gpus == 0:
        import warnings

        warnings.warn(
            "GPU actors requested but the cluster has no GPU now: the run waits until the "
            "autoscaler adds GPU nodes (use --device cpu on a machine without GPUs)",
            stacklevel=3,
        )
    if torch_threads is None:
        node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        per_node = max(node_cpus or [cpus])
        torch_threads = max(1, min(per_node, cpus // num_actors)) if not use_gpu else max(1, min(4, per_node))
    return use_gpu, int(num_actors), int(torch_threads)


#: Probe results of this process, keyed by everything they depend on: a second run of the
#: same network (a resume, a refused config, `fovea-ray run`'s steps) skips the model build.
_PROBES: dict[tuple, dict] = {}


def _probe_key(
    arch: str, weights: str | None, canvas, seed: int, layers, stats, backbone_only: bool, ppd: float
) -> tuple | None:
    """Cache key for a probe, or None (not cached) for weights that may change under one name."""
    stamp: tuple = ()
    if weights not in (None, "torchvision"):
        if "://" in weights or Path(weights).is_dir():
            return None  # a remote file or a training directory (its newest checkpoint moves on)
        st = Path(weights).stat()
        stamp = (st.st_size, st.st_mtime_ns)
    return (
        arch,
        weights,
        stamp,
        tuple(canvas),
        int(seed),
        tuple(layers),
        tuple(stats),
        bool(backbone_only),
        float(ppd),
    )


def _probe(arch: str, weights: str | None, canvas, seed: int, layers, stats, backbone_only: bool, ppd: float) -> dict:
    """:func:`probe_model` in a Ray task (no torch in the driver), cached per process."""
    import ray

    from fovea_ray.pipeline.probe import probe_model

    key = _probe_key(arch, weights, canvas, seed, layers, stats, backbone_only, ppd)
    if key is not None and key in _PROBES:
        return _PROBES[key]
    try:
        facts = ray.get(
            ray.remote(num_cpus=1)(probe_model).remote(
                arch, weights, canvas, int(seed), list(layers), list(stats), bool(backbone_only), ppd
            )
        )
    except Exception as exc:  # noqa: BLE001 - surface the user's error (bad layer, bad weights)
        cause = _cause(exc)
        if isinstance(cause, (InputError, FoveaRayError, ValueError, KeyError)):
            raise InputError(
                f"could not build the network ({arch}, weights={weights or 'random'}): "
                f"{' '.join(str(cause).split())[:600]}"
            ) from exc
        raise
    if key is not None:
        _PROBES[key] = facts
    return facts


def _actor_env() -> dict[str, str]:
    """Environment of the model actors' processes (read before torch starts OpenMP).

    OpenMP's default "active" waiting makes idle torch threads spin for their next task.
    The read and sink stages, Ray's daemons and the driver share the actor's cores, and
    a spinning thread then holds a core they need while its descheduled sibling delays
    every barrier: measured here, 2 torch threads on 2 busy cores used 2-3x the CPU per
    image of passive waiting, and ran slower (benchmarks/README.md). Passive waiting costs
    a wake-up latency of microseconds per parallel region. The user's own setting wins.
    """
    return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def _cause(exc: BaseException) -> BaseException:
    """The user's exception inside a Ray task error (so its one-line message reaches the CLI)."""
    seen = exc
    for _ in range(8):
        cause = getattr(seen, "cause", None) or seen.__cause__
        if cause is None or cause is seen:
            break
        seen = cause
    return seen


def sustained_rate(arrivals: Sequence[tuple[float, float]]) -> float:
    """Samples per second after start-up: the least-squares slope of samples done vs time.

    ``arrivals`` holds (seconds, cumulative samples) per stored chunk. The first chunk is
    left out: it carries the start-up, and its write may wait for a sink worker to start,
    which would bias a first-to-last difference. A slope over all later chunks is robust
    to one late or early arrival. With fewer than 5 chunks there is no meaningful slope
    (a few chunks stored together would read as a huge rate): 0.0, "not measured".
    """
    if len(arrivals) < 5:
        return 0.0
    pts = list(arrivals[1:])
    t = np.array([p[0] for p in pts], dtype=np.float64)
    n = np.array([p[1] for p in pts], dtype=np.float64)
    if np.ptp(t) <= 0:
        return 0.0
    return float(np.polyfit(t, n, 1)[0])


def extract(
    manifest: str | os.PathLike | pd.DataFrame,
    out: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    arch: str = "resnet101",
    layers: Sequence[str] | None = None,
    stats: Sequence[str] = DEFAULT_STATS,
    address: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    strict: bool = False,
    backbone_only: bool = False,
    device: str | None = None,
    num_actors: int | None = None,
    precision: str = "auto",
    torch_threads: int | None = None,
    storage_options: dict | None = None,
    progress: bool = True,
    on_chunk: Callable[[dict], None] | None = None,
) -> ExtractSummary:
    """Extract tapped, reduced activations for every manifest sample into a Zarr store.

    Args:
        manifest: a manifest parquet file (``fovea-ray prepare``) or its DataFrame.
        out: the store (``.zarr`` directory or fsspec URL); created, or resumed if it exists.
        weights: ``None``/``"none"`` (random weights drawn from ``seed``), a checkpoint path
            or training output directory, or ``"torchvision"``.
        arch: ``"resnet101"`` or ``"resnet50"``.
        layers: layer names or patterns (:func:`fovea_ray.taps.resolve_layers`); default
            the study's ``backbone.body.layer3.22.bn3`` (R101) / ``layer3.5.bn3`` (R50).
        stats: per-channel reductions (:func:`fovea_ray.taps.capture`).
        address: Ray cluster address; ``None`` uses ``RAY_ADDRESS`` or starts a local Ray.
        chunk_size: samples per store chunk (the unit of work, of writing and of resume).
        batch_size: images per forward pass inside an actor.
        seed: the seed of random weights.
        strict: stop with an error at the first sample that fails (and leave its chunk
            not done), instead of recording it and going on.
        backbone_only: run only the backbone (+FPN): faster, no anchor scores.
        device: ``None`` (GPU actors where the cluster has GPUs, else CPU), ``"cuda"``
            (GPU actors; an autoscaling cluster adds GPU nodes) or ``"cpu"``.
        num_actors: model actors (default: one per GPU; on CPU one per 4 cores, at least 1).
        precision: ``"auto"`` (bf16 autocast on GPU, fp32 on CPU), ``"fp32"``, ``"bf16"``, ``"fp16"``.
        torch_threads: torch intra-op threads per CPU actor (default: the cores per actor).
        storage_options: fsspec options for remote images and stores.
        progress: show Ray Data's progress bars.
        on_chunk: called in the driver as each chunk is stored, with ``{"chunk", "n",
            "n_failed", "elapsed_s"}`` (progress reporting, benchmarks).

    Returns:
        The run's :class:`ExtractSummary` (also stored as the ``last_run`` attribute).

    Raises:
        InputError: unreadable manifest, a store made with a different config, or (with
            ``strict``) the first failed sample.
    """
    import ray

    from fovea_ray.cluster import connect
    from fovea_ray.pipeline.actor import PRECISIONS, ChunkExtractor, ModelSpec
    from fovea_ray.pipeline.read import read_chunk
    from fovea_ray.pipeline.sink import write_chunks
    from fovea_ray.store import ChunkPlan, create_store, diff_configs, open_store

    if arch not in DEFAULT_LAYERS:
        raise InputError(f"unknown arch {arch!r}; choose one of {', '.join(DEFAULT_LAYERS)}")
    if int(chunk_size) < 1 or int(batch_size) < 1:
        raise InputError(f"chunk_size and batch_size must be >= 1, got {chunk_size} and {batch_size}")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    df, source = _load_manifest(manifest)
    canvas, ppd = _manifest_geometry(df, source)
    weights_arg = _weights_kind(weights)
    layers = tuple(layers) if layers else DEFAULT_LAYERS[arch]
    stats = tuple(stats)
    plan = ChunkPlan(len(df), int(chunk_size))
    out = os.fspath(out)

    connect(address)
    use_gpu, n_actors, threads = _cluster_plan(device, num_actors, torch_threads)
    resolved_precision = (
        ("bf16" if precision == "auto" else precision) if use_gpu else ("fp32" if precision == "auto" else precision)
    )

    facts = _probe(arch, weights_arg, canvas, int(seed), layers, stats, bool(backbone_only), ppd)

    config = {
        "manifest_checksum": manifest_checksum(df),
        "n_samples": len(df),
        "arch": arch,
        "weights": "random"
        if weights_arg is None
        else ("torchvision" if weights_arg == "torchvision" else "checkpoint"),
        "weights_checksum": facts["weights_checksum"],
        "layers": facts["layers"],
        "stats": facts["stats"],
        "control_stats": facts["control_stats"],
        "canvas": list(canvas),
        "foveation": facts["foveation"],
        "seed": int(seed),
        "chunk_size": plan.chunk_size,
        "backbone_only": bool(backbone_only),
        "precision": resolved_precision,
    }

    store, overwrite = None, False
    existing = None
    if "://" in out or Path(out).exists():
        try:
            existing = open_store(out, mode="r+", storage_options=storage_options)
        except InputError:
            if "://" not in out:
                raise  # a local path that is not a store: never overwrite it
    if existing is not None and existing.attrs.get("status") == "creating":
        overwrite = True  # an interrupted creation holds no results: make it again
    elif existing is not None:
        diffs = diff_configs(existing.attrs.get("config", {}), config)
        if diffs:
            raise InputError(
                f"{out}: this store was made with a different configuration, so it cannot be "
                f"resumed by this run: {'; '.join(diffs)}. Use another --out, or delete the store "
                "to start over."
            )
        store = existing
    if store is None:
        store = create_store(
            out,
            n_samples=len(df),
            layers={name: (c, facts["stats"]) for name, c in zip(facts["layers"], facts["channels"])},
            control_stats=facts["control_stats"],
            chunk_size=plan.chunk_size,
            samples=df,
            attrs={
                "config": config,
                "versions": {**_versions(), **facts["versions"]},
                "weights_checksum": facts["weights_checksum"],
                "weights_source": weights_arg or "random",
                "foveation": facts["foveation"],
                "manifest": source,
                "status": "created",
            },
            overwrite=overwrite,
            storage_options=storage_options,
        )

    pending = store.pending_chunks()
    summary = ExtractSummary(
        store=out,
        n_samples=len(df),
        n_chunks=plan.n_chunks,
        chunks_run=len(pending),
        chunks_skipped=plan.n_chunks - len(pending),
        device="GPU" if use_gpu else "CPU",
        actors=n_actors,
    )
    summary.skipped = len(df) - sum(plan.bounds(i)[1] - plan.bounds(i)[0] for i in pending)
    if not pending:
        summary.complete = True
        store.update_attrs(status="complete")
        return summary

    spec = ModelSpec(
        arch=arch,
        weights=weights_arg,
        canvas=tuple(canvas),
        seed=int(seed),
        layers=tuple(facts["layers"]),
        channels=tuple(facts["channels"]),
        stats=tuple(facts["stats"]),
        backbone_only=bool(backbone_only),
        foveation=dict(facts["foveation"]),
        device="cuda" if use_gpu else "cpu",
        precision=resolved_precision,
        batch_size=int(batch_size),
        torch_threads=None if use_gpu else threads,
        weights_checksum=facts["weights_checksum"],
    )

    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    ctx.enable_operator_progress_bars = bool(progress)
    ctx.execution_options.preserve_order = False
    compute = ActorPoolStrategy(min_size=1, max_size=n_actors) if use_gpu else ActorPoolStrategy(size=n_actors)
    # Logical CPUs per model actor: leave one CPU's worth to the read and sink tasks (0.5 each),
    # or they could never be scheduled beside a pool that fills the machine.
    cpus = float(ray.cluster_resources().get("CPU", 1))
    actor_cpus = 1.0 if use_gpu else max(0.25, min(float(threads), (cpus - 1.0) / n_actors, 1.0 * threads))
    rows = _chunk_rows(df, plan, pending)
    ds = (
        ray.data.from_items(rows, override_num_blocks=min(len(rows), 10_000))
        .map(read_chunk, fn_kwargs={"storage_options": storage_options}, num_cpus=0.5)
        .map_batches(
            ChunkExtractor,
            fn_constructor_kwargs={"spec": spec},
            batch_size=1,
            compute=compute,
            num_gpus=1 if use_gpu else 0,
            num_cpus=actor_cpus,
            runtime_env={"env_vars": _actor_env()},
        )
        .map_batches(
            write_chunks,
            batch_size=1,
            num_cpus=0.5,
            fn_kwargs={"store_path": out, "strict": bool(strict), "storage_options": storage_options},
        )
    )
    del rows
    file_names = df["file_name"].astype(str).to_numpy()
    store.update_attrs(status="running")
    t0 = time.perf_counter()
    arrivals: list[tuple[float, int]] = []  # (seconds, samples so far) as chunks are stored
    try:
        for row in ds.iter_rows():
            now = time.perf_counter()
            arrivals.append((now - t0, (arrivals[-1][1] if arrivals else 0) + int(row["n"])))
            failures = json.loads(row["failures"])
            if not row["written"]:
                sample, reason = failures[0]
                raise InputError(
                    f"{df['image_uri'].iloc[sample]}: {reason} (sample {sample}; --strict stops at the "
                    "first failure; its chunk was not written)"
                )
            summary.done += int(row["n"])
            summary.failed += len(failures)
            summary.model_seconds += float(row["seconds"])
            summary.forward_seconds += float(row["forward_seconds"])
            summary.write_seconds += float(row["write_seconds"])
            summary.failures.extend((int(s), str(file_names[s]), str(r)) for s, r in failures)
            if on_chunk is not None:
                on_chunk(
                    {"chunk": int(row["chunk"]), "n": int(row["n"]), "n_failed": len(failures), "elapsed_s": now - t0}
                )
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line for the user's errors raised inside Ray
        cause = _cause(exc)
        if isinstance(cause, FoveaRayError):
            raise type(cause)(str(cause)) from exc
        raise
    finally:
        summary.seconds = time.perf_counter() - t0
        if arrivals:
            summary.first_chunk_s = arrivals[0][0]
            summary.steady_images_per_s = sustained_rate(arrivals)
        summary.failures.sort()
        summary.complete = not store.pending_chunks()
        store.update_attrs(status="complete" if summary.complete else "incomplete", last_run=summary.to_dict())
    return summary
