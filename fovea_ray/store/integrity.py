"""Chunk integrity: a crc32c checksum on every chunk, and finding the chunks that are damaged.

Every array of a store made by this version carries Zarr v3's ``crc32c`` codec after its
compressor, so each chunk object ends in the checksum of its compressed bytes: a flipped
byte or a truncated object no longer decodes to wrong values (or to a bare "Zstd
decompression error"), it fails the check. A *deleted* chunk object is different: Zarr
reads a missing chunk as the fill value (NaN, ``""``, ``False``) without complaint, so
missing objects are found by listing: a chunk that must exist (every chunk of the
manifest-derived sample arrays; the done chunks of the per-chunk results) and is not in
the listing is damaged. All arrays are written with ``write_empty_chunks`` on, so a
chunk that must exist always has an object, even when it holds only fill values (the
NaN activations of a chunk whose every image failed).

:func:`find_damage` checks without decompressing: one listing per array and one read
of each expected object, whose last four bytes must be the crc32c of the rest. It runs
on the raw store (local or fsspec) with a bounded number of reads in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CHECKSUM",
    "Damage",
    "checksum_codecs",
    "find_damage",
    "repair_hint",
    "write_config",
]

#: The store attribute ``store.checksum`` of checksummed stores (absent in older ones).
CHECKSUM = "crc32c"

#: Reads in flight while checking one array (object stores answer many small gets best
#: when several are outstanding; a local disk does not mind).
_CONCURRENCY = 32


def checksum_codecs() -> tuple[Any, ...]:
    """The compressors of every array of a new store: Zarr's default zstd, then crc32c."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return (ZstdCodec(level=0, checksum=False), Crc32cCodec())


#: The runtime config of arrays written at creation (see :func:`write_config`).
ARRAY_CONFIG = {"write_empty_chunks": True}


def write_config():
    """A ``zarr.config`` context under which every written chunk gets an object.

    Zarr skips chunks equal to the fill value by default; a skipped chunk would be
    indistinguishable from a deleted one.
    """
    import zarr

    return zarr.config.set({"array.write_empty_chunks": True})


def repair_hint(store_path: str) -> str:
    """What to run to recompute damaged chunks."""
    return f"rerun `fovea-ray extract` on this store, or `fovea-ray verify {store_path} --repair`"


@dataclass(frozen=True)
class Damage:
    """One damaged chunk: the array's path in the store, the chunk index and why.

    ``samples`` is the ``(start, stop)`` sample range of the chunk for arrays over the
    sample dimension, ``None`` for the small coordinate arrays.
    """

    array: str
    chunk: int
    reason: str
    samples: tuple[int, int] | None = None

    def describe(self) -> str:
        """``activations/L/values chunk 3 (samples 12-15): checksum mismatch``."""
        where = f" (samples {self.samples[0]}-{self.samples[1] - 1})" if self.samples else ""
        return f"{self.array} chunk {self.chunk}{where}: {self.reason}"

    def to_record(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "array": self.array,
            "chunk": self.chunk,
            "reason": self.reason,
            "samples": list(self.samples) if self.samples else None,
        }


def _crc_ok(data: bytes) -> str | None:
    """``None`` when the object's last four bytes are the crc32c of the rest, else the reason."""
    import google_crc32c

    if len(data) < 5:
        return f"truncated ({len(data)} bytes)"
    stored = data[-4:]
    computed = np.uint32(google_crc32c.value(data[:-4])).tobytes()
    return None if stored == computed else "checksum mismatch (the chunk's bytes were altered or cut short)"


async def _listing(array) -> set[str]:
    store, prefix = array.store_path.store, array.store_path.path
    keys = set()
    async for key in store.list_prefix(prefix):
        keys.add(key[len(prefix) :].lstrip("/") if prefix else key)
    return keys


async def _check_array(array, wanted: Sequence[tuple[int, str]], checked: bool) -> list[tuple[int, str]]:
    """``(chunk, reason)`` for each wanted ``(chunk, key)`` missing or (``checked``) failing its crc."""
    from zarr.core.buffer import default_buffer_prototype

    present = await _listing(array)
    store, prefix = array.store_path.store, array.store_path.path
    proto = default_buffer_prototype()
    sem = asyncio.Semaphore(_CONCURRENCY)
    bad: list[tuple[int, str]] = []

    async def one(chunk: int, key: str) -> None:
        async with sem:
            buf = await store.get(f"{prefix}/{key}" if prefix else key, prototype=proto)
        if buf is None:
            bad.append((chunk, "missing (the chunk object was deleted)"))
            return
        reason = _crc_ok(buf.to_bytes())
        if reason:
            bad.append((chunk, reason))

    todo = []
    for chunk, key in wanted:
        if key not in present:
            bad.append((chunk, "missing (the chunk object was deleted)"))
        elif checked:
            todo.append(one(chunk, key))
    await asyncio.gather(*todo)
    return sorted(bad)


def _has_crc(array) -> bool:
    codecs = getattr(array.metadata, "codecs", ())
    return any(getattr(c, "to_dict", lambda: {})().get("name") == CHECKSUM for c in codecs)


def find_damage(
    arrays: Iterable[tuple[str, Any, Sequence[int] | None]],
    *,
    chunk_size: int,
    n_samples: int,
    checksums: bool = True,
) -> list[Damage]:
    """The damaged chunks of ``arrays``.

    Parameters
    ----------
    arrays : iterable of (path, zarr.Array, chunks)
        Each array with the sample-axis chunk indices that must exist (``None``: every
        chunk of the array, for the manifest-derived sample arrays and the coordinates).
    chunk_size, n_samples : int
        The store's chunk plan, for the sample ranges of the report.
    checksums : bool
        Check each object's crc32c (else only that it exists).

    Returns
    -------
    list of Damage
        Sorted by array path and chunk.
    """
    from zarr.core.sync import sync

    out: list[Damage] = []
    for path, array, chunks in arrays:
        n_first = -(-array.shape[0] // array.chunks[0]) if array.shape else 1
        indices = range(n_first) if chunks is None else chunks
        trailing = (0,) * (len(array.shape) - 1)
        wanted = [(int(i), array.metadata.encode_chunk_key((int(i), *trailing))) for i in indices]
        sample_axis = bool(array.metadata.dimension_names) and array.metadata.dimension_names[0] == "sample"
        for chunk, reason in sync(_check_array(array, wanted, checksums and _has_crc(array))):
            rng = (chunk * chunk_size, min((chunk + 1) * chunk_size, n_samples)) if sample_axis else None
            out.append(Damage(path, chunk, reason, rng))
    return sorted(out, key=lambda d: (d.array, d.chunk))
