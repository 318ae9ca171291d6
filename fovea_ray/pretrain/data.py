"""The Ray Data side of pre-training: the seeded order, and bytes decoded to uint8 in CPU tasks.

Each Ray Train rank gets its own dataset (``datasets={"train_r<rank>": ...}``, excluded
from ``DataConfig.datasets_to_split``, with ``preserve_order``) holding exactly its rows of
steps ``start_step .. steps - 1`` in order. Row ``j`` of rank ``r`` (counted from step 0)
is global position ``g = (j // B) * G + r * B + j % B`` (``B`` per-rank batch, ``G = B x
world``); epoch ``g // N`` visits the index in the seeded permutation
``default_rng([seed, epoch]).permutation(N)``. So the order is a function of (seed, step,
rank) only: a resumed run reads exactly what the uninterrupted run would have read, and
``streaming_split``'s dynamic, non-deterministic assignment of blocks to ranks is avoided.
The stream starts from ``ray.data.range`` and the index table (``name``, ``label``, in
Arrow) is put in the object store once, so neither the driver nor the dataset plan holds
per-epoch lists.

The map stage (CPU tasks) reads each file's bytes (local path or fsspec URL) and decodes
it with PIL to RGB uint8 (H, W, 3), downscaled in the task when its longer side exceeds
``max_side``. Images keep their own size and aspect (Arrow variable-shaped tensors):
foveation happens in the image's own geometry on the device, before the crop. A file
that cannot be read or decoded becomes a row with ``ok = False`` (and a 1x1 image), so
batches stay aligned to steps; the worker drops and counts it.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DecodeError",
    "decode_rgb",
    "epoch_permutation",
    "read_bytes",
    "read_rows",
    "train_dataset",
    "train_positions",
    "val_dataset",
]


class DecodeError(ValueError):
    """The bytes are not an image PIL can decode."""


def read_bytes(location: str) -> bytes:
    """The file's bytes (a local path or an fsspec URL)."""
    if "://" in location:
        import fsspec

        with fsspec.open(location, "rb") as fh:
            return fh.read()
    return Path(location).read_bytes()


def decode_rgb(data: bytes, max_side: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) from encoded bytes; greyscale, CMYK, palette and alpha become RGB.

    With ``max_side``, an image whose longer side is larger is scaled down to it (aspect
    kept; JPEG's DCT draft mode first, then an antialiased resize), in the CPU task, so a
    few huge photos do not dominate the bytes sent to the training device.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if max_side is not None and max(im.size) > max_side:
                scale = max_side / max(im.size)
                target = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
                im.draft("RGB", target)
                im = im.convert("RGB").resize(target, Image.BILINEAR, reducing_gap=2.0)
            arr = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DecodeError(f"{type(err).__name__}: {' '.join(str(err).split())[:200]}") from None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DecodeError(f"decoded to shape {arr.shape}")
    return np.ascontiguousarray(arr)


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the ``n`` index rows (cached per process)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def train_positions(local_rows: np.ndarray, *, rank: int, world: int, batch: int, n: int, seed: int) -> np.ndarray:
    """Index rows for rank ``rank``'s local rows (counted from step 0); see the module docstring."""
    local_rows = np.asarray(local_rows, dtype=np.int64)
    g = (local_rows // batch) * (batch * world) + rank * batch + local_rows % batch
    epochs, pos = g // n, g % n
    out = np.empty_like(g)
    for e in np.unique(epochs):
        sel = epochs == e
        out[sel] = epoch_permutation(seed, int(e), n)[pos[sel]]
    return out


_TABLES: dict[str, Any] = {}


def _index_table(ref: Any) -> Any:
    """The index table behind ``ref``, fetched once per worker process."""
    key = ref.hex()
    if key not in _TABLES:
        import ray

        _TABLES.clear()
        _TABLES[key] = ray.get(ref)
    return _TABLES[key]


def read_rows(rows: np.ndarray, table: Any, root: str, max_side: int | None) -> dict[str, np.ndarray]:
    """Read and decode index ``rows``: {"image" (object array of (H, W, 3) uint8), "label",
    "row", "ok"}; an unreadable file gives ``ok = False`` and a 1x1 black image."""
    rows = np.asarray(rows, dtype=np.int64)
    names = table.column("name").take(rows).to_pylist()
    labels = table.column("label").take(rows).to_numpy().astype(np.int64)
    images = np.empty(len(rows), dtype=object)
    ok = np.ones(len(rows), dtype=bool)
    for i, name in enumerate(names):
        try:
            images[i] = decode_rgb(read_bytes(root.rstrip("/") + "/" + name), max_side)
        except (OSError, DecodeError):
            images[i] = np.zeros((1, 1, 3), dtype=np.uint8)
            ok[i] = False
    return {"image": images, "label": labels, "row": rows, "ok": ok}


def _train_batch(
    batch: dict[str, np.ndarray],
    *,
    ref: Any,
    root: str,
    rank: int,
    world: int,
    batch_size: int,
    n: int,
    seed: int,
    offset: int,
    max_side: int | None,
) -> dict[str, np.ndarray]:
    local = batch["id"].astype(np.int64) + offset
    rows = train_positions(local, rank=rank, world=world, batch=batch_size, n=n, seed=seed)
    return read_rows(rows, _index_table(ref), root, max_side)


def _val_batch(
    batch: dict[str, np.ndarray], *, ref: Any, root: str, rank: int, world: int, max_side: int | None
) -> dict[str, np.ndarray]:
    rows = batch["id"].astype(np.int64) * world + rank
    return read_rows(rows, _index_table(ref), root, max_side)


def _blocks(count: int, rows_per_block: int) -> int:
    return max(1, min(count, -(-count // rows_per_block)))


def train_dataset(
    ref: Any,
    root: str,
    n: int,
    *,
    rank: int,
    world: int,
    batch_size: int,
    seed: int,
    start_step: int,
    steps: int,
    max_side: int | None,
    concurrency: int | None = None,
    rows_per_task: int = 32,
) -> Any:
    """Rank ``rank``'s rows for steps ``start_step .. steps - 1``, in order, decoded (uint8)."""
    import ray.data

    count = (steps - start_step) * batch_size
    ds = ray.data.range(count, override_num_blocks=_blocks(count, rows_per_task))
    fn = functools.partial(
        _train_batch,
        ref=ref,
        root=root,
        rank=rank,
        world=world,
        batch_size=batch_size,
        n=n,
        seed=seed,
        offset=start_step * batch_size,
        max_side=max_side,
    )
    return ds.map_batches(fn, batch_size=rows_per_task, batch_format="numpy", concurrency=concurrency)


def val_dataset(
    ref: Any,
    root: str,
    n: int,
    *,
    rank: int,
    world: int,
    max_side: int | None,
    concurrency: int | None = None,
    rows_per_task: int = 32,
) -> Any:
    """Rank ``rank``'s validation rows (``rank, rank + world, ...`` below ``n``), decoded."""
    import ray.data

    count = len(range(rank, n, world))
    ds = ray.data.range(max(count, 0), override_num_blocks=_blocks(max(count, 1), rows_per_task))
    fn = functools.partial(_val_batch, ref=ref, root=root, rank=rank, world=world, max_side=max_side)
    return ds.map_batches(fn, batch_size=rows_per_task, batch_format="numpy", concurrency=concurrency)
