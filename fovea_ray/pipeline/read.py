"""The read stage: fetch each chunk's encoded image bytes (local paths or fsspec URLs).

Bytes travel encoded (a JPEG is ~10x smaller than its pixels); decoding happens in the
model stage, on the GPU where there is one. A file that cannot be fetched is recorded
with its reason and yields empty bytes; it never fails the chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fovea_ray.errors import one_line
from fovea_ray.io import storage_options as _options

#: Concurrent fetches per read task for remote filesystems (object-store latency bound).
REMOTE_FETCH_THREADS = 16


def _is_url(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing file (not found)"
    if isinstance(exc, IsADirectoryError):
        return "not a file (a directory)"
    if isinstance(exc, PermissionError):
        return "unreadable file (permission denied)"
    return f"unreadable file ({type(exc).__name__}: {one_line(exc, 300)})"


def _read_local(uri: str) -> bytes:
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    with open(path, "rb") as fh:
        return fh.read()


def _read_remote(uri: str, storage_options: dict | None) -> bytes:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **_options(storage_options))
    return fs.cat_file(path)


def fetch_bytes(uris: Sequence[str], *, storage_options: dict | None = None) -> tuple[list[bytes], list[str]]:
    """Read every URI; returns ``(blobs, errors)`` with ``b""`` and a reason for failures.

    Local files are read in order; remote URLs (``s3://``, ``gs://``, ``https://`` ...)
    are fetched concurrently through fsspec, so one chunk costs about one round trip.
    """
    blobs: list[bytes] = [b""] * len(uris)
    errors: list[str] = [""] * len(uris)

    def one(i: int) -> None:
        uri = str(uris[i])
        try:
            data = _read_remote(uri, storage_options) if _is_url(uri) else _read_local(uri)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none is fatal
            errors[i] = _reason(exc)
            return
        if len(data) == 0:
            errors[i] = "empty file (0 bytes)"
        blobs[i] = bytes(data)

    remote = [i for i, u in enumerate(uris) if _is_url(str(u))]
    for i in sorted(set(range(len(uris))) - set(remote)):
        one(i)
    if remote:
        with ThreadPoolExecutor(min(REMOTE_FETCH_THREADS, len(remote))) as pool:
            list(pool.map(one, remote))
    return blobs, errors


def read_chunk(row: dict[str, Any], *, storage_options: dict | None = None) -> dict[str, Any]:
    """Ray Data ``map`` function: add ``blobs`` and ``read_error`` to one chunk row."""
    blobs, errors = fetch_bytes(list(row["image_uri"]), storage_options=storage_options)
    row["blobs"] = blobs
    row["read_error"] = errors
    return row
