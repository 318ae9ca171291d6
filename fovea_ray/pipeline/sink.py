"""The sink stage: write each finished chunk into the store, then mark it done.

Every row reaching the sink is one store chunk, and only the task holding that row
writes that chunk's rows of every array (:meth:`fovea_ray.store.Store.write_chunk`),
so concurrent sink tasks never share a Zarr object and no locking is needed. What
goes back to the driver is a few numbers and the failure reasons, never activations.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

#: Column prefix of the per-layer activation tensors in the model stage's output rows.
ACT_PREFIX = "act:"


def _strings(value: Any) -> list[str]:
    return [str(v) for v in (json.loads(value) if isinstance(value, str) else list(value))]


def write_chunks(
    batch: dict[str, np.ndarray], *, store_path: str, strict: bool = False, storage_options: dict | None = None
) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: write every chunk row of ``batch``.

    Input rows (from :class:`fovea_ray.pipeline.actor.ChunkExtractor`): ``chunk``, ``n``
    (valid samples), ``act:<layer>`` (K, C, S) arrays padded to the chunk size,
    ``controls`` (K, 3, S'), ``anchor_score`` (K,), ``errors`` (JSON list of K strings),
    ``weights_checksum``, ``seconds`` (model stage wall time), ``forward_seconds`` (of which
    the tapped forward).

    With ``strict`` a chunk holding a failed sample is not written (so a rerun meets
    the same failure again); the driver turns the returned failure into an error.
    """
    from fovea_ray.store import open_store

    store = open_store(store_path, mode="r+", storage_options=storage_options)
    layers = store.layers
    out: dict[str, list] = {
        k: []
        for k in (
            "chunk",
            "n",
            "n_failed",
            "failures",
            "written",
            "weights_checksum",
            "seconds",
            "forward_seconds",
            "write_seconds",
        )
    }
    for r in range(len(batch["chunk"])):
        t0 = time.perf_counter()
        chunk, n = int(batch["chunk"][r]), int(batch["n"][r])
        start, _ = store.plan.bounds(chunk)
        errors = _strings(batch["errors"][r])[:n]
        failures = [[start + i, e] for i, e in enumerate(errors) if e]
        written = not (strict and failures)
        if written:
            try:
                store.write_chunk(
                    chunk,
                    activations={layer: np.asarray(batch[ACT_PREFIX + layer][r])[:n] for layer in layers},
                    controls=np.asarray(batch["controls"][r])[:n],
                    anchor_score=np.asarray(batch["anchor_score"][r])[:n],
                    error=errors,
                )
            except OSError as exc:
                if exc.filename is None:  # zarr's ENOSPC names no file: name the store and chunk
                    raise type(exc)(exc.errno, exc.strerror, f"{store_path} (chunk {chunk})") from exc
                raise
        out["chunk"].append(chunk)
        out["n"].append(n)
        out["n_failed"].append(len(failures))
        out["failures"].append(json.dumps(failures))
        out["written"].append(written)
        out["weights_checksum"].append(str(batch["weights_checksum"][r]))
        out["seconds"].append(float(batch["seconds"][r]))
        out["forward_seconds"].append(
            float(batch["forward_seconds"][r]) if "forward_seconds" in batch else float("nan")
        )
        out["write_seconds"].append(time.perf_counter() - t0)
    return {k: np.asarray(v) for k, v in out.items()}
