"""Where fovea-ray's outputs go: a local path or any fsspec URL (``s3://``, ``gs://``, ``memory://``).

Every output (the manifest and its summary and preview, the store, ``results.json``, the
figures and ``report.html``) is named by a string that is either a local path or a URL,
and goes through this module. A URL is never passed through :class:`pathlib.Path`, which
collapses ``s3://b/k`` to ``s3:/b/k`` and so writes a local folder named ``s3:``.

Storage options (credentials, endpoint) for URLs, in this order:

1. the ``storage_options`` a caller passes;
2. the ``FOVEA_RAY_STORAGE_OPTIONS`` environment variable (JSON, or ``key=value`` pairs
   separated by commas), which ``fovea-ray --storage-options ...`` sets, so Ray workers
   started by this process inherit it;
3. nothing: the filesystem's own defaults. For ``s3://`` these are the AWS environment
   variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
   ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``) and ``AWS_ENDPOINT_URL`` for an S3-compatible
   server (MinIO, Ceph, moto), all read by s3fs/botocore.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from pathlib import Path
from typing import Any

from fovea_ray.errors import InputError

__all__ = [
    "STORAGE_OPTIONS_ENV",
    "exists",
    "is_url",
    "join",
    "parent",
    "parse_storage_options",
    "read_bytes",
    "storage_options",
    "with_suffix_name",
    "write_bytes",
    "write_text",
]

STORAGE_OPTIONS_ENV = "FOVEA_RAY_STORAGE_OPTIONS"


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an fsspec URL (``proto://...``) rather than a local path."""
    return "://" in os.fspath(path)


def _text(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    return text if is_url(text) else str(Path(text).expanduser())


def join(base: str | os.PathLike, *names: str) -> str:
    """``base/name/...`` for a local folder or a URL (URLs keep their ``//``)."""
    text = os.fspath(base)
    if is_url(text):
        return posixpath.join(text.rstrip("/"), *names)
    return str(Path(text).expanduser().joinpath(*names))


def parent(path: str | os.PathLike) -> str:
    """The folder that holds ``path`` (a URL's parent stays a URL)."""
    text = os.fspath(path)
    if is_url(text):
        proto, rest = text.split("://", 1)
        head = posixpath.dirname(rest.rstrip("/"))
        return f"{proto}://{head}"
    return str(Path(text).expanduser().parent)


def with_suffix_name(path: str | os.PathLike, new_suffix: str) -> str:
    """``dir/m.parquet`` -> ``dir/m<new_suffix>`` (the last suffix replaced; appended if none)."""
    text = os.fspath(path)
    folder, name = (parent(text), posixpath.basename(text.rstrip("/"))) if is_url(text) else (None, Path(text).name)
    stem = name[: name.rfind(".")] if "." in name.lstrip(".") else name
    return join(folder, stem + new_suffix) if folder is not None else str(Path(text).with_name(stem + new_suffix))


def parse_storage_options(text: str, *, source: str = "--storage-options") -> dict[str, Any]:
    """``'{"endpoint_url": "http://..."}'`` or ``'endpoint_url=http://...,anon=false'`` -> a dict.

    ``key=value`` values are read as JSON where they parse (``true``, ``3``), else kept as
    strings; a dotted key nests (``client_kwargs.region_name=eu-west-1``).
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise InputError(f"{source}: must be a JSON object, got {type(value).__name__}")
        return value
    out: dict[str, Any] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{source}: expected KEY=VALUE pairs separated by commas, got {item.strip()!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw.strip()
        *outer, last = key.strip().split(".")
        node = out
        for k in outer:
            node = node.setdefault(k, {})
        node[last] = value
    return out


def storage_options(given: dict | None = None) -> dict[str, Any]:
    """The fsspec storage options to use: ``given``, else ``$FOVEA_RAY_STORAGE_OPTIONS``, else ``{}``."""
    if given is not None:
        return dict(given)
    env = os.environ.get(STORAGE_OPTIONS_ENV, "")
    return parse_storage_options(env, source=STORAGE_OPTIONS_ENV) if env else {}


def _fs(path: str, options: dict | None):
    import fsspec

    try:
        return fsspec.core.url_to_fs(path, **storage_options(options))
    except (ImportError, ValueError) as exc:
        raise InputError(f"{path}: cannot open ({exc})") from None


def exists(path: str | os.PathLike, *, options: dict | None = None) -> bool:
    """Whether ``path`` exists (a file or a folder)."""
    text = _text(path)
    if not is_url(text):
        return Path(text).exists()
    fs, inner = _fs(text, options)
    return bool(fs.exists(inner))


def read_bytes(path: str | os.PathLike, *, options: dict | None = None) -> bytes:
    """The bytes of a file; ``FileNotFoundError`` when it is absent."""
    text = _text(path)
    if not is_url(text):
        return Path(text).read_bytes()
    fs, inner = _fs(text, options)
    with fs.open(inner, "rb") as f:
        return f.read()


def write_bytes(path: str | os.PathLike, data: bytes, *, options: dict | None = None) -> str:
    """Write ``data`` to ``path`` (creating folders) and return the path as given.

    Local files are written atomically (a temporary file beside it, then a rename); an
    object store's single PUT is atomic by itself.
    """
    text = _text(path)
    if not is_url(text):
        target = Path(text)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_bytes(data)
            tmp.replace(target)
        except OSError as exc:
            if exc.filename is None:  # a write error (ENOSPC) names no file by itself
                raise type(exc)(exc.errno, exc.strerror, text) from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return text
    fs, inner = _fs(text, options)
    with fs.open(inner, "wb") as f:
        f.write(data)
    return text


def write_text(path: str | os.PathLike, text: str, *, options: dict | None = None) -> str:
    """:func:`write_bytes` of ``text`` in UTF-8."""
    return write_bytes(path, text.encode("utf-8"), options=options)
