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

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fovea_ray.errors import ClusterError, FoveaRayError, InputError, one_line, root_cause
from fovea_ray.interrupts import Interrupted, interruption_in
from fovea_ray.names import DEFAULT_LAYERS, DEFAULT_STATS, MAX_CANVAS, reduction_numerics
from fovea_ray.pipeline.capacity import (
    Capacity,
    actor_cpus_cap,
    check_capacity,
    check_shared_output,
    stall_timeout_from_env,
    waiting_for,
    watch_stalls,
)
from fovea_ray.pipeline.probe import ModelFacts
from fovea_ray.pipeline.summary import ExtractSummary

if TYPE_CHECKING:
    from fovea_ray.pipeline.actor import ModelSpec
    from fovea_ray.store import Store

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


#: Weights named by a keyword, not a file: torchvision enum names (``IMAGENET1K_V2``,
#: ``DEFAULT``, ``ResNet50_Weights.IMAGENET1K_V2``) and timm's ``pretrained``.
_WEIGHTS_KEYWORD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?$")
_WEIGHTS_FILES = (".pt", ".pth", ".bin", ".safetensors", ".pkl", ".ckpt")


def _weights_kind(weights: str | os.PathLike | None, detection: bool = True) -> str | None:
    """``None`` (random), ``"torchvision"``, a classifier's weights keyword, or the checkpoint path."""
    if weights is None:
        return None
    text = os.fspath(weights)
    if text.lower() in ("", "none", "random"):
        return None
    if text.lower() == "torchvision":
        return "torchvision"
    looks_like_file = text.lower().endswith(_WEIGHTS_FILES) or not _WEIGHTS_KEYWORD.match(text)
    if not detection and not looks_like_file and not Path(text).expanduser().exists():
        return text  # IMAGENET1K_V2, DEFAULT, pretrained: checked when the network is built
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


def _load_manifest(
    manifest: str | os.PathLike | pd.DataFrame, storage_options: dict | None = None
) -> tuple[pd.DataFrame, str]:
    if isinstance(manifest, pd.DataFrame):
        return manifest.reset_index(drop=True), "<DataFrame>"
    from fovea_ray.data.manifest import read_manifest

    return read_manifest(manifest, storage_options=storage_options).reset_index(drop=True), os.fspath(manifest)


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
    if min(canvas) < 8 or max(canvas) > MAX_CANVAS:
        raise InputError(f"{source}: canvas {list(canvas)} is outside 8..{MAX_CANVAS} px")
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


@dataclass(frozen=True)
class ExtractOptions:
    """One run's request, validated: what to extract (the store's config) and how.

    Attributes are :func:`extract`'s parameters of the same names, checked and made
    canonical: ``weights`` is ``None`` (random), ``"torchvision"`` or a resolved path or
    URL, and ``layers`` holds the requested names or patterns (the study's layer when
    none were given).
    """

    arch: str = "resnet101"
    weights: str | None = None
    model: str | None = None
    layers: tuple[str, ...] = ()
    stats: tuple[str, ...] = DEFAULT_STATS
    chunk_size: int = DEFAULT_CHUNK_SIZE
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = 0
    strict: bool = False
    backbone_only: bool = False
    device: str | None = None
    num_actors: int | None = None
    precision: str = "auto"
    torch_threads: int | None = None
    allow_mixed_numerics: bool = False

    @classmethod
    def validated(
        cls,
        *,
        weights: str | os.PathLike | None,
        layers: Sequence[str] | None,
        model: str | None = None,
        arch: str | None = None,
        **kw: Any,
    ) -> ExtractOptions:
        """Check the values (one-line :class:`InputError` naming the bad one) and build the options.

        A detection ``model`` (``maskrcnn_resnet50_fpn``) becomes its ``arch``, so the store's
        config is the same as with ``--arch``; any other network is kept as ``model``.
        """
        from fovea_ray.model.spec import model_from_arch, parse_model
        from fovea_ray.pipeline.actor import PRECISIONS

        if model is not None and arch is not None:
            raise InputError(f"give --arch {arch} or --model {model}, not both")
        try:
            ref = parse_model(model) if model is not None else parse_model(model_from_arch(arch or "resnet101"))
        except ValueError as err:
            raise InputError(str(err)) from None
        if ref.weights is not None:
            given = None if weights is None else os.fspath(weights)
            if given not in (None, "", "none") and given != ref.weights:
                raise InputError(f"weights given twice: --model {model} and --weights {given}")
            weights = ref.weights
        detection = ref.kind == "detection"
        opts = cls(
            weights=_weights_kind(weights, detection),
            arch=ref.arch if detection else "",
            model=None if detection else ref.name,
            **kw,
        )
        if int(opts.chunk_size) < 1 or int(opts.batch_size) < 1:
            raise InputError(f"chunk_size and batch_size must be >= 1, got {opts.chunk_size} and {opts.batch_size}")
        if opts.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {opts.precision!r}")
        return replace(
            opts,
            layers=tuple(layers) if layers else (DEFAULT_LAYERS[opts.arch] if detection else ()),
            stats=tuple(opts.stats),
            chunk_size=int(opts.chunk_size),
            batch_size=int(opts.batch_size),
            seed=int(opts.seed),
            strict=bool(opts.strict),
            backbone_only=bool(opts.backbone_only),
        )

    @property
    def weights_label(self) -> str:
        """``"random"``, ``"torchvision"``, ``"checkpoint"`` or a classifier's weights keyword
        (``IMAGENET1K_V2``, ``pretrained``): the store config's ``weights``."""
        if self.weights is None:
            return "random"
        if self.weights == "torchvision":
            return "torchvision"
        keyword = bool(_WEIGHTS_KEYWORD.match(self.weights)) and not self.weights.lower().endswith(_WEIGHTS_FILES)
        return self.weights if keyword and self.model is not None else "checkpoint"

    @property
    def network(self) -> str:
        """The network in words: the model name, or the detector's backbone."""
        return self.model or f"maskrcnn_{self.arch}_fpn"


@dataclass(frozen=True)
class ClusterPlan:
    """Where the model stage runs: device, actor count and each actor's resources."""

    use_gpu: bool
    actors: int
    torch_threads: int
    precision: str  # concrete: fp32 on CPU, bf16 for "auto" on GPU
    actor_cpus: float

    @property
    def device(self) -> str:
        return "cuda" if self.use_gpu else "cpu"


def _cluster_plan(opts: ExtractOptions) -> ClusterPlan:
    """The model stage's placement from the connected cluster's resources."""
    import ray

    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
    use_gpu = gpus > 0 if opts.device is None else str(opts.device).startswith("cuda")
    num_actors = opts.num_actors
    if num_actors is None:
        # GPU: one actor per GPU. CPU: a few fat actors (torch parallelises inside), and on
        # a small machine one, below the core count so the read and sink stages can run.
        num_actors = max(1, gpus) if use_gpu else max(1, cpus // 4)
    if num_actors < 1:
        raise InputError(f"num_actors must be >= 1, got {num_actors}")
    # GPUs asked for on a cluster without any: refused (or awaited) by check_capacity.
    threads = opts.torch_threads
    if threads is None:
        node_cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        per_node = max(node_cpus or [cpus])
        threads = max(1, min(per_node, cpus // num_actors)) if not use_gpu else max(1, min(4, per_node))
    auto = "bf16" if use_gpu else "fp32"
    # Logical CPUs per model actor: leave one CPU's worth to the read and sink tasks (0.5 each),
    # or they could never be scheduled beside a pool that fills the machine.
    actor_cpus = (
        1.0 if use_gpu else max(0.25, min(float(threads), (float(res.get("CPU", 1)) - 1.0) / num_actors, 1.0 * threads))
    )
    if not use_gpu:
        # ...and half a CPU on the actor's node even when it is the only node left.
        alive = tuple(float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive"))
        actor_cpus = min(actor_cpus, actor_cpus_cap(alive or (float(cpus),)))
    return ClusterPlan(
        use_gpu=use_gpu,
        actors=int(num_actors),
        torch_threads=int(threads),
        precision=auto if opts.precision == "auto" else opts.precision,
        actor_cpus=actor_cpus,
    )


#: Probe results of this process, keyed by everything they depend on: a second run of the
#: same network (a resume, a refused config, `fovea-ray run`'s steps) skips the model build.
_PROBES: dict[tuple, ModelFacts] = {}


def _probe_key(opts: ExtractOptions, canvas: tuple[int, int], ppd: float) -> tuple | None:
    """Cache key for a probe, or None (not cached) for weights that may change under one name."""
    stamp: tuple = ()
    if opts.weights not in (None, "torchvision") and opts.weights_label == "checkpoint":
        if "://" in opts.weights or Path(opts.weights).is_dir():
            return None  # a remote file or a training directory (its newest checkpoint moves on)
        st = Path(opts.weights).stat()
        stamp = (st.st_size, st.st_mtime_ns)
    return (
        opts.arch,
        opts.model,
        opts.weights,
        stamp,
        tuple(canvas),
        opts.seed,
        opts.layers,
        opts.stats,
        opts.backbone_only,
        ppd,
    )


def _probe(opts: ExtractOptions, canvas: tuple[int, int], ppd: float) -> ModelFacts:
    """:func:`probe_model` in a Ray task (no torch in the driver), cached per process."""
    import ray

    from fovea_ray.pipeline.probe import probe_model

    key = _probe_key(opts, canvas, ppd)
    if key is not None and key in _PROBES:
        return _PROBES[key]
    task = ray.remote(num_cpus=1)(probe_model)
    try:
        facts = ray.get(
            task.remote(
                opts.arch,
                opts.weights,
                canvas,
                opts.seed,
                list(opts.layers),
                list(opts.stats),
                opts.backbone_only,
                ppd,
                opts.model,
            )
        )
    except Exception as exc:  # noqa: BLE001 - surface the user's error (bad layer, bad weights)
        cause = _cause(exc)
        if isinstance(cause, (InputError, FoveaRayError, ValueError, KeyError)):
            raise InputError(
                f"could not build the network ({opts.network}, weights={opts.weights or 'random'}): "
                f"{one_line(cause, 600)}"
            ) from exc
        raise
    if key is not None:
        _PROBES[key] = facts
    return facts


def numerics(opts: ExtractOptions, facts: ModelFacts, cluster: ClusterPlan) -> dict[str, Any]:
    """What changes the round-off of the stored values without changing the experiment.

    The batch size and the CPU thread count change the order of floating-point sums in
    the convolutions (measured: 87% of values differ between 8 and 1 threads, median
    relative 5e-7), as do the torch build and the device. A resume that would mix chunks
    of two fingerprints is refused (:func:`_check_numerics`). On GPU the CPU thread count
    does not enter the forward, so it is not part of the fingerprint there. ``reductions``
    says which per-channel reductions ran (:func:`~fovea_ray.names.reduction_numerics`:
    on a CPU with numba the compiled pass's float64-summed mean).
    """
    return {
        "batch_size": opts.batch_size,
        "device": cluster.device,
        "torch_threads": None if cluster.use_gpu else cluster.torch_threads,
        "torch": facts.versions.get("torch"),
        "reductions": reduction_numerics("cuda" if cluster.use_gpu else "cpu"),
    }


def _store_config(
    df: pd.DataFrame,
    opts: ExtractOptions,
    facts: ModelFacts,
    canvas: tuple[int, int],
    precision: str,
    numerics_fingerprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's canonical config: the store keeps it, and a resume must match it key for key.

    Mask R-CNN runs keep the ``arch`` key (stores made before other networks resume as
    before); any other network is recorded as ``model`` plus its ``input`` resize and
    normalisation, which are part of the experiment. ``numerics`` (:func:`numerics`) is
    compared apart from the rest (:func:`_check_numerics`).
    """
    network: dict[str, Any] = {"arch": opts.arch} if opts.model is None else {"model": opts.model, "input": facts.input}
    return {
        "manifest_checksum": manifest_checksum(df),
        "n_samples": len(df),
        **network,
        "weights": opts.weights_label,
        "weights_checksum": facts.weights_checksum,
        "layers": list(facts.layers),
        "stats": list(facts.stats),
        "control_stats": list(facts.control_stats),
        "canvas": list(canvas),
        "foveation": facts.foveation,
        "seed": opts.seed,
        "chunk_size": opts.chunk_size,
        "backbone_only": opts.backbone_only,
        "precision": precision,
        **({"numerics": numerics_fingerprint} if numerics_fingerprint is not None else {}),
    }


def _check_numerics(out: str, stored: dict[str, Any], requested: dict[str, Any], store: Store, force: bool) -> bool:
    """Refuse (or, with ``force``, announce) a resume whose numerics differ from the store's.

    Returns whether the run goes on with different numerics. A complete store mixes
    nothing, and a store made before the fingerprint existed cannot be checked.
    """
    from fovea_ray.store import diff_configs

    if "numerics" not in stored or not store.pending_chunks():
        return False
    diffs = diff_configs(stored["numerics"], requested.get("numerics", {}), prefix="numerics.")
    if not diffs:
        return False
    if not force:
        raise InputError(
            f"{out}: resuming would mix chunks computed with different numerics ({'; '.join(diffs)}): "
            "their values would differ in round-off. Rerun with the store's settings (--batch-size, "
            "--torch-threads, the same device and torch), or pass --allow-mixed-numerics to go on anyway."
        )
    import warnings

    warnings.warn(f"{out}: resuming with different numerics ({'; '.join(diffs)}), as asked", stacklevel=3)
    return True


def _open_or_create(
    out: str,
    df: pd.DataFrame,
    source: str,
    config: dict[str, Any],
    opts: ExtractOptions,
    facts: ModelFacts,
    storage_options: dict | None,
) -> Store:
    """The store at ``out``: resumed if it holds this config, else created (refused if it differs)."""
    from fovea_ray.store import create_store, diff_configs, open_store

    existing = None
    force_numerics = opts.allow_mixed_numerics
    if "://" in out or Path(out).exists():
        try:
            existing = open_store(out, mode="r+", storage_options=storage_options)
        except InputError:
            if "://" not in out:
                raise  # a local path that is not a store: never overwrite it
    # An interrupted creation ("creating") holds no results: make it again.
    if existing is not None and existing.attrs.get("status") != "creating":
        stored = dict(existing.attrs.get("config", {}))
        # Numerics are checked apart; a store made before they were recorded resumes as before.
        diffs = diff_configs(
            {k: v for k, v in stored.items() if k != "numerics"},
            {k: v for k, v in config.items() if k != "numerics"},
        )
        if diffs:
            raise InputError(
                f"{out}: this store was made with a different configuration, so it cannot be "
                f"resumed by this run: {'; '.join(diffs)}. Use another --out, or delete the store "
                "to start over."
            )
        mixed = _check_numerics(out, stored, config, existing, force_numerics)
        if mixed:
            history = list(existing.attrs.get("numerics_mixed", []))
            existing.update_attrs(numerics_mixed=[*history, config["numerics"]])
        return existing
    return create_store(
        out,
        n_samples=len(df),
        layers=facts.store_layers(),
        control_stats=list(facts.control_stats),
        chunk_size=opts.chunk_size,
        samples=df,
        attrs={
            "config": config,
            "versions": {**_versions(), **facts.versions},
            "weights_checksum": facts.weights_checksum,
            "weights_source": opts.weights or "random",
            "default_layer": facts.default_layer,
            "foveation": facts.foveation,
            "manifest": source,
            "categories": _category_names(df),
            "status": "created",
        },
        overwrite=existing is not None,
        storage_options=storage_options,
    )


def _category_names(df: pd.DataFrame) -> dict[str, str]:
    """``{category id: name}`` of the manifest's samples (for the report's tables)."""
    if "category_name" not in df.columns:
        return {}
    pairs = df[["category_id", "category_name"]].drop_duplicates("category_id")
    return {str(int(c)): str(n) for c, n in pairs.itertuples(index=False) if isinstance(n, str) and n}


def _build_dataset(
    rows: list[dict[str, Any]],
    spec: ModelSpec,
    cluster: ClusterPlan,
    out: str,
    opts: ExtractOptions,
    storage_options: dict | None,
    progress: bool,
):
    """The one linear Ray Data chain: read (CPU tasks) → model (actor pool) → sink (CPU tasks)."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    from fovea_ray.pipeline.actor import ChunkExtractor
    from fovea_ray.pipeline.read import read_chunk
    from fovea_ray.pipeline.sink import write_chunks

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    ctx.enable_operator_progress_bars = bool(progress)
    ctx.execution_options.preserve_order = False
    n = cluster.actors
    compute = ActorPoolStrategy(min_size=1, max_size=n) if cluster.use_gpu else ActorPoolStrategy(size=n)
    return (
        ray.data.from_items(rows, override_num_blocks=min(len(rows), 10_000))
        .map(read_chunk, fn_kwargs={"storage_options": storage_options}, num_cpus=0.5)
        .map_batches(
            ChunkExtractor,
            fn_constructor_kwargs={"spec": spec},
            batch_size=1,
            compute=compute,
            num_gpus=1 if cluster.use_gpu else 0,
            num_cpus=cluster.actor_cpus,
            runtime_env={"env_vars": _actor_env()},
        )
        .map_batches(
            write_chunks,
            batch_size=1,
            num_cpus=0.5,
            fn_kwargs={"store_path": out, "strict": opts.strict, "storage_options": storage_options},
        )
    )


def _drain(
    ds,
    df: pd.DataFrame,
    store: Store,
    summary: ExtractSummary,
    on_chunk: Callable[[dict], None] | None,
    stall_timeout: float = 0.0,
    cluster: ClusterPlan | None = None,
) -> ExtractSummary:
    """Pull the stored chunks' counts into ``summary``; the store's status says how it ended.

    With ``stall_timeout`` > 0, no stored chunk for that long stops the run with a
    :class:`fovea_ray.errors.ClusterError` saying what the plan waits for.
    """
    file_names = df["file_name"].astype(str).to_numpy()
    store.update_attrs(status="running")
    t0 = time.perf_counter()
    arrivals: list[tuple[float, int]] = []  # (seconds, samples so far) as chunks are stored

    def explain() -> str:
        import ray

        done = arrivals[-1][1] if arrivals else 0
        plan = cluster or ClusterPlan(False, 1, 1, "fp32", 1.0)
        return f"{done} samples stored by this run; " + waiting_for(
            Capacity.of_cluster(),
            ray.available_resources(),
            use_gpu=plan.use_gpu,
            actors=plan.actors,
            actor_cpus=plan.actor_cpus,
        )

    interrupted: Interrupted | None = None
    try:
        for row in watch_stalls(ds.iter_rows(), stall_timeout, explain):
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
    except (InputError, ClusterError):
        raise
    except Interrupted as stop:
        # SIGINT/SIGTERM (fovea_ray.interrupts): Ray Data has already shut its executor down
        # (its iterator catches BaseException); chunks in flight are simply not marked done.
        interrupted = stop
        raise
    except Exception as exc:  # noqa: BLE001 - one line for the user's errors raised inside Ray
        wrapped = interruption_in(exc)
        if wrapped is not None:  # the signal landed inside Ray's core: SystemError around it
            interrupted = wrapped
            raise wrapped from None
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
        pending = store.pending_chunks()
        summary.complete = not pending
        status = "complete" if summary.complete else ("interrupted" if interrupted else "incomplete")
        store.update_attrs(status=status, last_run=summary.to_dict())
        if interrupted is not None:
            left = sum(b - a for a, b in map(store.plan.bounds, pending)) if pending else 0
            interrupted.progress = (
                f"{summary.n_samples - left} of {summary.n_samples} samples done; rerun the same command to resume"
            )
    return summary


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


_cause = root_cause


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
    arch: str | None = None,
    layers: Sequence[str] | None = None,
    stats: Sequence[str] = DEFAULT_STATS,
    address: str | None = None,
    model: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    strict: bool = False,
    backbone_only: bool = False,
    device: str | None = None,
    num_actors: int | None = None,
    precision: str = "auto",
    torch_threads: int | None = None,
    allow_mixed_numerics: bool = False,
    storage_options: dict | None = None,
    progress: bool = True,
    on_chunk: Callable[[dict], None] | None = None,
    shared_path: bool = False,
    wait_for_resources: bool = False,
    stall_timeout: float | None = None,
) -> ExtractSummary:
    """Extract tapped, reduced activations for every manifest sample into a Zarr store.

    Parameters
    ----------
    manifest : path, URL or DataFrame
        A manifest parquet file (``fovea-ray prepare``) or its DataFrame.
    out : path or URL
        The store (``.zarr`` directory or fsspec URL); created, or resumed if it exists.
    weights : str, path or None
        ``None``/``"none"`` (random weights drawn from ``seed``), a checkpoint path or
        training output directory, or ``"torchvision"``.
    arch : str, optional
        ``"resnet101"`` (the default) or ``"resnet50"``: Mask R-CNN on that backbone.
    layers : sequence of str, optional
        Layer names or patterns (:func:`fovea_ray.taps.resolve_layers`), or ``:default`` /
        ``:blocks`` (the network's default layer / every block); default the study's
        ``backbone.body.layer3.22.bn3`` (R101) / ``layer3.5.bn3`` (R50), and for another
        network its family's default layer (:func:`fovea_ray.model.zoo.default_layer`).
    stats : sequence of str
        Per-channel reductions (:func:`fovea_ray.taps.capture`).
    address : str, optional
        Ray cluster address; ``None`` uses ``RAY_ADDRESS`` or starts a local Ray.
    model : str, optional
        Any network as a model spec (:mod:`fovea_ray.model.spec`): ``resnet50``,
        ``vit_b_16@IMAGENET1K_V1``, ``timm:NAME``, ``package.module:function``, or a
        detector name; give ``arch`` or ``model``. A classifier sees the canvas resized and
        normalised as its weights say, and has no anchor score (NaN in the store).
    chunk_size : int
        Samples per store chunk (the unit of work, of writing and of resume).
    batch_size : int
        Images per forward pass inside an actor.
    seed : int
        The seed of random weights.
    strict : bool
        Stop with an error at the first sample that fails (and leave its chunk not
        done), instead of recording it and going on.
    backbone_only : bool
        Run only the backbone (+FPN): faster, no anchor scores. For another network: stop
        after the deepest tapped layer.
    device : str, optional
        ``None`` (GPU actors where the cluster has GPUs, else CPU), ``"cuda"`` (GPU
        actors; an autoscaling cluster adds GPU nodes) or ``"cpu"``.
    num_actors : int, optional
        Model actors (default: one per GPU; on CPU one per 4 cores, at least 1).
    precision : str
        ``"auto"`` (bf16 autocast on GPU, fp32 on CPU), ``"fp32"``, ``"bf16"``, ``"fp16"``.
    torch_threads : int, optional
        torch intra-op threads per CPU actor (default: the cores per actor).
    allow_mixed_numerics : bool
        Resume a store even when the batch size, CPU thread count, device or torch
        version differ from those it was started with (default: refused, since the
        chunks' round-off would differ); the store's ``numerics_mixed`` attribute records it.
    storage_options : dict, optional
        fsspec options for remote images and stores (default:
        :func:`fovea_ray.io.storage_options`: ``FOVEA_RAY_STORAGE_OPTIONS``, else the
        filesystem's own, e.g. the AWS environment variables for s3://).
    progress : bool
        Show Ray Data's progress bars.
    on_chunk : callable, optional
        Called in the driver as each chunk is stored, with ``{"chunk", "n", "n_failed",
        "elapsed_s"}`` (progress reporting, benchmarks).
    shared_path : bool
        ``out`` is a local path on a filesystem every node shares (NFS, Lustre, EFS): a
        local ``out`` on a cluster of more than one node is refused without it.
    wait_for_resources : bool
        Start even when the cluster has no GPU for ``device="cuda"`` (an autoscaling
        cluster adds GPU nodes on demand); the stall timeout still bounds the wait.
    stall_timeout : float, optional
        Seconds without a stored chunk before the run stops with a message saying what
        it waits for (default ``$FOVEA_RAY_STALL_TIMEOUT``, else 600; 0: wait for ever).
        Chunks already stored stay done: rerun to resume.

    Returns
    -------
    ExtractSummary
        The run's summary (also stored as the ``last_run`` attribute).

    Raises
    ------
    InputError
        Unreadable manifest, a store made with a different config, or (with ``strict``)
        the first failed sample.
    ClusterError
        The cluster cannot run the plan (no GPU for ``device="cuda"``, too few CPUs, a
        local ``out`` on several nodes), or no chunk was stored for ``stall_timeout`` s.
    """
    from fovea_ray.cluster import connect
    from fovea_ray.io import storage_options as default_storage_options
    from fovea_ray.pipeline.actor import ModelSpec
    from fovea_ray.store import ChunkPlan

    # 1. Validate: the options, the manifest and its one geometry.
    opts = ExtractOptions.validated(
        weights=weights,
        layers=layers,
        arch=arch,
        model=model,
        stats=stats,
        chunk_size=chunk_size,
        batch_size=batch_size,
        seed=seed,
        strict=strict,
        backbone_only=backbone_only,
        device=device,
        num_actors=num_actors,
        precision=precision,
        torch_threads=torch_threads,
        allow_mixed_numerics=allow_mixed_numerics,
    )
    # Explicit from here on: the read and sink tasks may run on nodes without this environment.
    storage_options = default_storage_options(storage_options) or None
    df, source = _load_manifest(manifest, storage_options)
    canvas, ppd = _manifest_geometry(df, source)
    out = os.fspath(out)
    timeout = stall_timeout_from_env(stall_timeout)
    connect(address)
    capacity = Capacity.of_cluster()
    cluster = _cluster_plan(opts)
    awaits_gpus = cluster.use_gpu and wait_for_resources and max(capacity.node_gpus, default=0) < 1
    check_shared_output(out, capacity, shared_path=shared_path, nodes_to_come=awaits_gpus)
    check_capacity(
        capacity,
        use_gpu=cluster.use_gpu,
        actors=cluster.actors,
        actor_cpus=cluster.actor_cpus,
        wait_for_resources=wait_for_resources,
    )
    facts = _probe(opts, canvas, ppd)

    # 2. Open or resume the store (a different config is refused).
    config = _store_config(df, opts, facts, canvas, cluster.precision, numerics(opts, facts, cluster))
    with _naming_the_store(out):
        store = _open_or_create(out, df, source, config, opts, facts, storage_options)
    plan = ChunkPlan(len(df), opts.chunk_size)
    # A "complete" store is re-verified too: a deleted or corrupt chunk is recomputed.
    damaged = store.damage()
    if damaged:
        store.repair(damaged, samples=df)
    pending = store.pending_chunks()
    summary = ExtractSummary(
        store=out,
        n_samples=len(df),
        n_chunks=plan.n_chunks,
        chunks_run=len(pending),
        chunks_skipped=plan.n_chunks - len(pending),
        device="GPU" if cluster.use_gpu else "CPU",
        actors=cluster.actors,
    )
    summary.skipped = len(df) - sum(plan.bounds(i)[1] - plan.bounds(i)[0] for i in pending)
    summary.repaired = [d.describe() for d in damaged]
    if not pending:
        summary.complete = True
        store.update_attrs(status="complete")
        return summary

    # 3. Build the dataset over the pending chunks; 4. drain it into the summary.
    spec = ModelSpec.from_facts(
        facts,
        arch=opts.arch,
        model=opts.model,
        weights=opts.weights,
        canvas=canvas,
        seed=opts.seed,
        backbone_only=opts.backbone_only,
        device=cluster.device,
        precision=cluster.precision,
        batch_size=opts.batch_size,
        torch_threads=None if cluster.use_gpu else cluster.torch_threads,
    )
    ds = _build_dataset(_chunk_rows(df, plan, pending), spec, cluster, out, opts, storage_options, progress)
    with _naming_the_store(out):
        return _drain(ds, df, store, summary, on_chunk, stall_timeout=timeout, cluster=cluster)


@contextlib.contextmanager
def _naming_the_store(out: str) -> Iterator[None]:
    """An ``OSError`` that names no file (zarr's "no space left on device") names the store."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, out) from exc
        raise
