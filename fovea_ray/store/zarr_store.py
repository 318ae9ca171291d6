"""The activation store: creating, writing chunk by chunk, and reading it back.

One Zarr v3 hierarchy (layout in :mod:`fovea_ray.store.layout`). Reading is plain Zarr
plus numpy/pandas, and every group also opens in ``xarray.open_zarr(path, group=...)``
with labelled dimensions. Writing happens one whole chunk at a time: the values of
every array first, the ``done`` flags last, so a chunk marked done never holds partial
data, and chunk files (written atomically by Zarr's local store) are never shared
between two writers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fovea_ray.errors import DamagedStoreError, InputError
from fovea_ray.names import canonical_stats
from fovea_ray.store import integrity
from fovea_ray.store import layout as L
from fovea_ray.store.integrity import Damage


def _zarr():
    import zarr

    return zarr


def _consolidate(target: Any, path: str | None = None) -> None:
    """Consolidate metadata so ``xarray.open_zarr`` opens each group without a warning.

    Zarr warns that consolidated metadata is not (yet) in the v3 spec; it is only a
    read-speed cache here (the truth is in each node's ``zarr.json``).
    """
    zarr = _zarr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(target, path=path)


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _as_store_path(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    return text if _is_remote(text) else str(Path(text).expanduser())


#: Object stores whose fsspec filesystems cache directory listings (fsspec's ``DirCache``).
_LISTING_CACHES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


def _options_for(path: str, storage_options: dict | None) -> dict | None:
    """A remote store's fsspec options: those given, else :func:`fovea_ray.io.storage_options`.

    Listings are not cached (``use_listings_cache=False``, unless the options say
    otherwise): the store is written by sink tasks in other processes, and s3fs answers a
    read of a chunk written after a cached listing with "not found", so the driver saw
    chunks done by the sinks as not done (and their values as fill values).
    """
    if not _is_remote(path):
        return None  # zarr refuses storage options for a local path
    from fovea_ray.io import storage_options as default_options

    options = default_options(storage_options)
    if path.split("://", 1)[0].lower() in _LISTING_CACHES:
        options.setdefault("use_listings_cache", False)
    return options or None


class Store:
    """A fovea-ray activation store (open it with :func:`open_store`).

    Sample rows are final once ``done`` is true; a sample that failed (unreadable image)
    is done with a non-empty ``error`` and NaN activations, so the analysable samples
    are ``done & (error == "")`` (:meth:`good`).

    Reads of a checksummed store (:attr:`checksummed`) are verified: a chunk that is
    missing or fails its crc32c raises :class:`fovea_ray.errors.DamagedStoreError` naming
    it, so no damaged value is ever returned. Stores made before checksums open as
    *unverified*.
    """

    def __init__(self, path: str | os.PathLike, *, mode: str = "r", storage_options: dict | None = None) -> None:
        zarr = _zarr()
        self.path = _as_store_path(path)
        self._mode = mode
        self._storage_options = storage_options = _options_for(self.path, storage_options)
        if not _is_remote(self.path) and not Path(self.path).exists():
            raise InputError(f"{self.path}: no such fovea-ray store (the path does not exist)")
        try:
            # Read node metadata from each zarr.json, not the consolidated cache, so a
            # writer's view of attrs is never stale.
            self._root = zarr.open_group(self.path, mode=mode, use_consolidated=False, storage_options=storage_options)
        except Exception as exc:  # noqa: BLE001 - any failure means "not a store"
            raise InputError(f"{self.path}: not a fovea-ray store ({type(exc).__name__}: {exc})") from exc
        meta = self._root.attrs.get("store")
        if not isinstance(meta, dict) or meta.get("format") != L.FORMAT:
            raise InputError(
                f"{self.path}: not a fovea-ray store (no 'store' attribute "
                f"with format {L.FORMAT!r} in its root zarr.json)"
            )
        if int(meta.get("format_version", -1)) > L.FORMAT_VERSION:
            raise InputError(
                f"{self.path}: store format version {meta.get('format_version')} is newer "
                f"than this fovea-ray understands ({L.FORMAT_VERSION}); upgrade fovea-ray"
            )
        self._meta = meta
        self.plan = L.ChunkPlan(int(meta["n_samples"]), int(meta["chunk_size"]))

    # ------------------------------------------------------------------ layout facts
    def __repr__(self) -> str:
        return (
            f"Store({self.path!r}, n_samples={self.n_samples}, chunk_size={self.chunk_size}, "
            f"layers={self.layers}, status={self.attrs.get('status')!r})"
        )

    @property
    def storage_options(self) -> dict | None:
        """The fsspec options this store was opened with (None for a local store)."""
        return self._storage_options

    @property
    def n_samples(self) -> int:
        """Number of sample rows N."""
        return self.plan.n_samples

    @property
    def chunk_size(self) -> int:
        """Samples per chunk K."""
        return self.plan.chunk_size

    @property
    def n_chunks(self) -> int:
        """Number of chunks along the sample axis."""
        return self.plan.n_chunks

    @property
    def layers(self) -> list[str]:
        """Tapped layers in network depth order."""
        return list(self._meta["layers"])

    @property
    def attrs(self) -> dict:
        """Root attributes: config, versions, weights_checksum, foveation, status, store."""
        return dict(self._root.attrs.asdict())

    def _layer_values(self, layer: str):
        if layer not in self._meta["layers"]:
            raise KeyError(f"{self.path}: no layer {layer!r}; the store holds {self.layers}")
        return self._root[f"{L.layer_group(layer)}/{L.VALUES}"]

    def stat_names(self, layer: str) -> list[str]:
        """Statistic names along the last axis of ``activations(layer)``."""
        return list(self._layer_values(layer).attrs["stat_names"])

    def channels(self, layer: str) -> int:
        """Number of channels C of ``layer``."""
        return int(self._layer_values(layer).shape[1])

    @property
    def control_stat_names(self) -> list[str]:
        """Statistic names along the last axis of :meth:`controls`."""
        return list(self._root[f"{L.CONTROLS}/{L.VALUES}"].attrs["stat_names"])

    # ------------------------------------------------------------------ integrity
    @property
    def checksummed(self) -> bool:
        """Whether every chunk carries a crc32c checksum (stores made before checksums: False)."""
        return self._meta.get("checksum") == integrity.CHECKSUM

    def _expected_chunks(self, path: str, done: Sequence[int]) -> Sequence[int] | None:
        """The chunks of array ``path`` that must have an object (None: all of them)."""
        name = path.rsplit("/", 1)[-1]
        if path.startswith(f"{L.SAMPLES}/"):
            if name == "done":
                return done  # a pending chunk may have no flags yet
            return done if name in L.RESULT_ARRAYS else None
        return done if name == L.VALUES else None

    def _checked_arrays(self) -> list[str]:
        """Every array path of the store, samples first."""
        paths = [f"{L.SAMPLES}/{name}" for name in L.SAMPLE_ARRAYS]
        for layer in self.layers:
            paths += [f"{L.layer_group(layer)}/{L.VALUES}", f"{L.layer_group(layer)}/{L.DIM_STAT}"]
        paths += [f"{L.CONTROLS}/{L.VALUES}", f"{L.CONTROLS}/{L.DIM_STAT}", f"{L.CONTROLS}/{L.DIM_RGB}"]
        return paths

    def damage(self, paths: Sequence[str] | None = None, *, checksums: bool = True) -> list[Damage]:
        """Every damaged chunk of the arrays at ``paths`` (default: all arrays).

        A chunk is damaged when its object is missing although it must exist (every
        chunk of the manifest-derived arrays, the done chunks of the results) or when its
        crc32c does not match (``checksums``). An unverified store (:attr:`checksummed`
        False) reports nothing: its empty chunks were never written, so a missing object
        proves nothing.
        """
        if not self.checksummed:
            return []
        done = [int(i) for i in np.flatnonzero(self.chunk_done())]
        arrays = []
        for path in paths or self._checked_arrays():
            try:
                arr = self._root[path]
            except KeyError:
                continue
            arrays.append((path, arr, self._expected_chunks(path, done)))
        return integrity.find_damage(arrays, chunk_size=self.chunk_size, n_samples=self.n_samples, checksums=checksums)

    def _raise_damage(self, found: Sequence[Damage]) -> None:
        first = found[0]
        more = f" (and {len(found) - 1} more; `fovea-ray verify {self.path}` lists them)" if len(found) > 1 else ""
        err = DamagedStoreError(
            f"{self.path}: damaged chunk {first.describe()}{more}; {integrity.repair_hint(self.path)}"
        )
        err.damage = [d.to_record() for d in found]
        raise err

    def _read(self, path: str, *, done: Sequence[int] | None = None) -> np.ndarray:
        """All of array ``path``, verified: a missing or corrupt chunk raises DamagedStoreError.

        The happy path costs one listing: the crc32c of every chunk is checked by Zarr's
        codec pipeline as it decodes; only when a decode fails are the raw objects
        checked one by one to name the culprit.
        """
        arr = self._root[path]
        if not self.checksummed:
            return arr[...]
        if done is None:
            done = [int(i) for i in np.flatnonzero(self.chunk_done())]
        spec = [(path, arr, self._expected_chunks(path, done))]
        kw = dict(chunk_size=self.chunk_size, n_samples=self.n_samples)
        missing = integrity.find_damage(spec, checksums=False, **kw)
        if missing:
            self._raise_damage(missing)
        try:
            return arr[...]
        except Exception:
            found = integrity.find_damage(spec, checksums=True, **kw)
            if found:
                self._raise_damage(found)
            raise

    # ------------------------------------------------------------------ reading
    def _done_chunks(self) -> list[int] | None:
        """Indices of the done chunks when reads are verified (None: an unverified store)."""
        return [int(i) for i in np.flatnonzero(self.chunk_done())] if self.checksummed else None

    def _sample_array(self, name: str, done: Sequence[int] | None = None) -> np.ndarray:
        arr = self._read(f"{L.SAMPLES}/{name}", done=done)
        if arr.dtype.kind == "T":  # numpy StringDType from Zarr's variable-length strings
            arr = arr.astype(object)
        return np.asarray(arr)

    @property
    def samples(self) -> pd.DataFrame:
        """One row per sample: ``sample, image_id, ann_id, category_id, label, fixation,
        eccentricity_deg, anchor_score, done, error, file_name``; ``fixation`` holds (x, y)."""
        done = self._done_chunks()

        def col(name: str) -> np.ndarray:
            return self._sample_array(name, done)

        df = pd.DataFrame(
            {
                "sample": col("sample"),
                "image_id": col("image_id"),
                "ann_id": col("ann_id"),
                "category_id": col("category_id"),
                "label": col("label"),
                "fixation": list(col("fixation")),
                "eccentricity_deg": col("eccentricity_deg"),
                "anchor_score": col("anchor_score"),
                "done": col("done").astype(bool),
                "error": pd.Series(col("error"), dtype=str),
                "file_name": pd.Series(col("file_name"), dtype=str),
            }
        )
        return df

    def good(self) -> np.ndarray:
        """Boolean mask (N,) of samples that are done without error."""
        chunks = self._done_chunks()
        done = self._sample_array("done", chunks).astype(bool)
        err = self._sample_array("error", chunks)
        return done & np.array([e == "" for e in err], dtype=bool)

    def activations(self, layer: str, *, stats: Sequence[str] | None = None) -> np.ndarray:
        """``(N, C, S)`` float32 reductions of ``layer`` (NaN rows: not done or failed).

        ``stats`` selects (and orders) a subset of :meth:`stat_names`, by any spelling
        :func:`fovea_ray.names.canonical_stats` admits (``MEAN``, ``topk_mean``).
        """
        self._layer_values(layer)  # a KeyError naming the layers when it is not one
        out = np.asarray(self._read(f"{L.layer_group(layer)}/{L.VALUES}"), dtype=np.float32)
        if stats is not None:
            try:
                stats = canonical_stats(stats)
            except ValueError as exc:
                raise KeyError(f"{self.path}: {exc}") from None
            names = self.stat_names(layer)
            missing = [s for s in stats if s not in names]
            if missing:
                raise KeyError(f"{self.path}: layer {layer!r} has stats {names}, not {missing}")
            out = out[:, :, [names.index(s) for s in stats]]
        return out

    def controls(self) -> np.ndarray:
        """``(N, 3, S')`` float32 pixel statistics of the model input (per RGB channel)."""
        return np.asarray(self._read(f"{L.CONTROLS}/{L.VALUES}"), dtype=np.float32)

    def chunk_done(self) -> np.ndarray:
        """``(n_chunks,)`` bool: a chunk is done when every one of its samples is.

        A chunk whose ``done`` object cannot be read counts as not done (it is redone;
        :meth:`damage` reports it).
        """
        arr = self._root[f"{L.SAMPLES}/done"]
        out = np.zeros(self.n_chunks, dtype=bool)
        try:
            done = np.asarray(arr[...], dtype=bool)
        except Exception:  # noqa: BLE001 - fall back chunk by chunk
            done = None
        for i in self.plan:
            a, b = self.plan.bounds(i)
            if done is not None:
                out[i] = bool(done[a:b].all())
            else:
                try:
                    out[i] = bool(np.asarray(arr[a:b], dtype=bool).all())
                except Exception:  # noqa: BLE001
                    out[i] = False
        return out

    def pending_chunks(self) -> list[int]:
        """Chunk indices not yet marked done."""
        return [int(i) for i in np.flatnonzero(~self.chunk_done())]

    def to_xarray(self):
        """All groups as one lazily loaded :class:`xarray.Dataset`.

        Sample arrays keep their names; each layer becomes a variable named after it,
        with dims ``(sample, "<layer>:channel", "<layer>:stat")`` (layers may differ in C
        and S), and the pixel controls a variable ``controls`` with dims
        ``(sample, rgb, "controls:stat")``; the stat dims carry the stat names.

        A chunk object missing from a checksummed store raises
        :class:`~fovea_ray.errors.DamagedStoreError` here (xarray would read it as the
        fill value); a corrupt one fails its crc32c when the data is loaded.
        """
        import xarray as xr

        missing = self.damage(checksums=False)
        if missing:
            self._raise_damage(missing)

        opts = (
            dict(consolidated=None, storage_options=self._storage_options)
            if _is_remote(self.path)
            else dict(consolidated=None)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ds = xr.open_zarr(self.path, group=L.SAMPLES, **opts)
            parts = [ds]
            for layer in self.layers:
                g = xr.open_zarr(self.path, group=L.layer_group(layer), **opts)
                g = g.rename({L.VALUES: layer, L.DIM_CHANNEL: f"{layer}:channel", L.DIM_STAT: f"{layer}:stat"})
                parts.append(g)
            c = xr.open_zarr(self.path, group=L.CONTROLS, **opts)
            parts.append(c.rename({L.VALUES: "controls", L.DIM_STAT: "controls:stat"}))
        out = xr.merge(parts, compat="override", join="exact", combine_attrs="drop")
        out.attrs = {k: v for k, v in self.attrs.items() if k in ("status", "weights_checksum")}
        return out

    # ------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if self._mode == "r":
            raise PermissionError(f"{self.path}: store opened read-only; use open_store(path, mode='r+')")

    def write_chunk(
        self,
        chunk_index: int,
        *,
        activations: Mapping[str, np.ndarray],
        controls: np.ndarray,
        anchor_score: np.ndarray,
        error: Sequence[str],
    ) -> None:
        """Write every array's rows of chunk ``chunk_index``, then mark its samples done.

        Parameters
        ----------
        activations : Mapping of str to ndarray
            ``{layer: (K, C, S)}`` for every layer of the store (NaN rows for
            failed samples).
        controls : ndarray
            ``(K, 3, S')`` pixel statistics.
        anchor_score : ndarray
            ``(K,)`` detection score of each sample's anchor object (NaN in
            backbone-only mode or for failed samples).
        error : sequence of str
            ``K`` strings, ``""`` for a good sample, else the reason it failed.

        Notes
        -----
        K is the chunk's length (``chunk_size``, or less for the last chunk). Writes cover
        whole Zarr chunks only, and ``done`` goes last: an interrupted write leaves the
        chunk not done, and the rerun rewrites it.
        """
        self._require_writable()
        a, b = self.plan.bounds(int(chunk_index))
        k = b - a
        want = set(self.layers)
        if set(activations) != want:
            raise ValueError(f"write_chunk: activations for {sorted(activations)}, store has layers {sorted(want)}")
        checked: dict[str, np.ndarray] = {}
        for layer in self.layers:
            arr = np.asarray(activations[layer], dtype=np.float32)
            expect = (k, self.channels(layer), len(self.stat_names(layer)))
            if arr.shape != expect:
                raise ValueError(
                    f"write_chunk: layer {layer!r} chunk {chunk_index} has shape {arr.shape}, expected {expect}"
                )
            checked[layer] = arr
        controls = np.asarray(controls, dtype=np.float32)
        expect = (k, 3, len(self.control_stat_names))
        if controls.shape != expect:
            raise ValueError(
                f"write_chunk: controls of chunk {chunk_index} have shape {controls.shape}, expected {expect}"
            )
        anchor_score = np.asarray(anchor_score, dtype=np.float32).reshape(-1)
        if anchor_score.shape != (k,):
            raise ValueError(
                f"write_chunk: anchor_score has {anchor_score.shape[0]} values, chunk {chunk_index} has {k} samples"
            )
        error = [str(e) for e in error]
        if len(error) != k:
            raise ValueError(f"write_chunk: {len(error)} error strings, chunk {chunk_index} has {k} samples")

        with integrity.write_config():
            for layer, arr in checked.items():
                self._root[f"{L.layer_group(layer)}/{L.VALUES}"][a:b] = arr
            self._root[f"{L.CONTROLS}/{L.VALUES}"][a:b] = controls
            self._root[f"{L.SAMPLES}/anchor_score"][a:b] = anchor_score
            self._root[f"{L.SAMPLES}/error"][a:b] = np.array(error, dtype=np.dtypes.StringDType())
            # Last: only now is the chunk complete.
            self._root[f"{L.SAMPLES}/done"][a:b] = np.ones(k, dtype=bool)

    def mark_not_done(self, chunks: Sequence[int]) -> None:
        """Clear the done flags of ``chunks``, so the next ``extract`` recomputes them."""
        self._require_writable()
        with integrity.write_config():
            for i in sorted({int(c) for c in chunks}):
                a, b = self.plan.bounds(i)
                self._root[f"{L.SAMPLES}/done"][a:b] = np.zeros(b - a, dtype=bool)

    def repair(self, found: Sequence[Damage], samples: pd.DataFrame | None = None) -> list[int]:
        """Make the damaged chunks recomputable; returns the sample chunks marked not done.

        Every sample chunk named in ``found`` loses its done flags (its results are
        recomputed by the next ``extract``). Damaged manifest-derived rows are rewritten
        from ``samples`` (the manifest; ``extract`` passes it), and damaged coordinate
        arrays from the stat names in the arrays' attributes.
        """
        self._require_writable()
        chunks = sorted({d.chunk for d in found if d.samples is not None})
        self.mark_not_done(chunks)
        derived = {d.chunk for d in found if d.samples is not None and _is_derived(d.array)}
        with integrity.write_config():
            if derived and samples is not None:
                sources = _sample_sources(samples.reset_index(drop=True), self.n_samples)
                for name in sources:
                    arr = self._root[f"{L.SAMPLES}/{name}"]
                    values = sources[name]()
                    for i in sorted(derived):
                        a, b = self.plan.bounds(i)
                        arr[a:b] = values[a:b]
            for d in found:
                if d.samples is None:
                    parent, name = d.array.rsplit("/", 1)
                    names = (
                        ["r", "g", "b"] if name == L.DIM_RGB else self._root[f"{parent}/{L.VALUES}"].attrs["stat_names"]
                    )
                    self._root[d.array][...] = np.array(list(names), dtype=np.dtypes.StringDType())
        return chunks

    def update_attrs(self, **attrs: Any) -> None:
        """Merge ``attrs`` into the root attributes (the driver's status updates)."""
        self._require_writable()
        self._root.attrs.update(attrs)
        _consolidate(self._root.store)


def _is_derived(path: str) -> bool:
    """Whether ``path`` is a sample array copied from the manifest at creation."""
    prefix = f"{L.SAMPLES}/"
    return path.startswith(prefix) and path[len(prefix) :] not in L.RESULT_ARRAYS


def _column(
    samples: pd.DataFrame, name: str, n: int, dtype: str, width: int | None = None, default: Any = None
) -> np.ndarray:
    """One manifest column as an array, ``default`` filled when the column is absent."""
    if name in samples.columns:
        col = samples[name].to_numpy()
        if width is not None:
            rows = [np.asarray(v, dtype=np.float64).reshape(-1) for v in col]
            bad = [i for i, r in enumerate(rows) if r.shape != (width,)]
            if bad:
                raise InputError(
                    f"samples column {name!r}: row {bad[0]} has {rows[bad[0]].size} values, expected {width}"
                )
            return np.stack(rows).astype(dtype) if rows else np.zeros((0, width), dtype)
        return col.astype(dtype) if dtype != "str" else np.array([str(v) for v in col], dtype=np.dtypes.StringDType())
    if default is None:
        raise InputError(f"samples table lacks the column {name!r} (columns: {list(samples.columns)})")
    shape = (n, width) if width else (n,)
    if dtype == "str":
        return np.full(shape, default, dtype=np.dtypes.StringDType())
    return np.full(shape, default, dtype=dtype)


def _sample_sources(samples: pd.DataFrame, n: int) -> dict[str, Any]:
    """``{sample array: () -> values (N, ...)}`` for the arrays copied from the manifest."""
    fixation = None
    if "fixation" in samples.columns:
        fixation = _column(samples, "fixation", n, "float64", width=2, default=np.nan)
    elif "fixation_xy" not in samples.columns and {"fixation_x", "fixation_y"} <= set(samples.columns):
        fixation = np.stack(
            [samples["fixation_x"].to_numpy(np.float64), samples["fixation_y"].to_numpy(np.float64)], axis=1
        )
    sources = {
        "sample": lambda: (
            _column(samples, "sample", n, "int64", default=-1)
            if "sample" in samples.columns
            else np.arange(n, dtype=np.int64)
        ),
        "image_id": lambda: _column(samples, "image_id", n, "int64"),
        "ann_id": lambda: _column(samples, "ann_id", n, "int64"),
        "category_id": lambda: _column(samples, "category_id", n, "int64"),
        "label": lambda: _column(samples, "label", n, "int8"),
        "fixation": lambda: (
            fixation if fixation is not None else _column(samples, "fixation_xy", n, "float64", width=2, default=np.nan)
        ),
        "eccentricity_deg": lambda: _column(samples, "eccentricity_deg", n, "float64", default=np.nan),
        "window": lambda: _column(samples, "window_xywh", n, "int64", width=4, default=0),
        "bbox": lambda: _column(samples, "bbox", n, "float64", width=4, default=np.nan),
        "file_name": lambda: _column(samples, "file_name", n, "str", default=""),
    }
    return sources


def _group(root: Any, path: str) -> Any:
    """Create ``path`` and its parents (Zarr v3 has no implicit groups)."""
    g = root
    for part in path.split("/"):
        g = g.require_group(part)
    return g


def create_store(
    path: str | os.PathLike,
    *,
    n_samples: int,
    layers: Mapping[str, tuple[int, Sequence[str]]],
    control_stats: Sequence[str],
    chunk_size: int,
    samples: pd.DataFrame,
    attrs: Mapping[str, Any],
    overwrite: bool = False,
    storage_options: dict | None = None,
    checksums: bool = True,
) -> Store:
    """Create an empty store for ``n_samples`` samples and return it opened for writing.

    Parameters
    ----------
    path : str or PathLike
        the ``.zarr`` directory (or an fsspec URL) to create.
    n_samples : int
        N, the number of manifest rows.
    layers : Mapping
        ``{layer: (channels, stat names)}`` in network depth order.
    control_stats : sequence of str
        names of the pixel-control statistics S'.
    chunk_size : int
        K, samples per chunk (the unit of work and of resume).
    samples : pandas.DataFrame
        the manifest rows (columns as in :func:`fovea_ray.data.manifest.read_manifest`;
        the fixation (x, y) is read from ``fixation`` (the store's name), ``fixation_xy`` (the
        manifest file's) or, from older tables, ``fixation_x``/``fixation_y``).
    attrs : Mapping
        root attributes (config, versions, weights_checksum, foveation, status).
    overwrite : bool, optional
        replace an existing store at ``path`` (otherwise it is an error).
    checksums : bool, optional
        give every chunk a crc32c checksum (:mod:`fovea_ray.store.integrity`); False
        makes a store as older versions did (benchmarks and compatibility tests only).
    """
    zarr = _zarr()
    n = int(n_samples)
    plan = L.ChunkPlan(n, int(chunk_size))
    if len(samples) != n:
        raise InputError(f"samples table has {len(samples)} rows, n_samples is {n}")
    if not layers:
        raise ValueError("create_store: at least one layer is required")
    for name in layers:
        L.validate_layer_name(name)
    target = _as_store_path(path)
    storage_options = _options_for(target, storage_options)
    if not overwrite and not _is_remote(target) and Path(target).exists():
        raise InputError(f"{target}: already exists (open it to resume, or pass overwrite=True)")

    meta = {
        "format": L.FORMAT,
        "format_version": L.FORMAT_VERSION,
        "n_samples": n,
        "chunk_size": plan.chunk_size,
        "layers": list(layers),
        "control_stats": list(control_stats),
    }
    if checksums:
        meta["checksum"] = integrity.CHECKSUM
    codecs = {"compressors": integrity.checksum_codecs()} if checksums else {}
    final_status = dict(attrs).get("status", "created")
    # "creating" until every array exists: an interrupted creation is recognisable (and redone).
    root_attrs = {**dict(attrs), "status": "creating", "store": meta}
    root = zarr.open_group(
        target, mode="w" if overwrite else "w-", attributes=root_attrs, storage_options=storage_options
    )
    K = plan.chunk_size

    # samples/
    sg = root.create_group(L.SAMPLES)
    sources = _sample_sources(samples, n)
    for name, (dtype, trailing, tdims, fill) in L.SAMPLE_ARRAYS.items():
        arr = sg.create_array(
            name,
            shape=(n, *trailing),
            chunks=(K, *trailing),
            dtype=str if dtype == "str" else dtype,
            fill_value=fill,
            **codecs,
            config=integrity.ARRAY_CONFIG,
            dimension_names=(L.DIM_SAMPLE, *tdims),
        )
        if name in sources:
            arr[...] = sources[name]()

    # activations/<layer>/
    for name, (channels, stats) in layers.items():
        g = _group(root, L.layer_group(name))
        g.create_array(
            L.VALUES,
            shape=(n, int(channels), len(stats)),
            chunks=(K, int(channels), len(stats)),
            dtype="float32",
            fill_value=float("nan"),
            **codecs,
            config=integrity.ARRAY_CONFIG,
            dimension_names=(L.DIM_SAMPLE, L.DIM_CHANNEL, L.DIM_STAT),
            attributes={"stat_names": list(stats), "module": name, "long_name": f"per-channel reductions of {name}"},
        )
        coord = g.create_array(
            L.DIM_STAT,
            shape=(len(stats),),
            dtype=str,
            **codecs,
            config=integrity.ARRAY_CONFIG,
            dimension_names=(L.DIM_STAT,),
        )
        coord[...] = np.array(list(stats), dtype=np.dtypes.StringDType())
        _consolidate(root.store, L.layer_group(name))

    # controls/pixels/
    cg = _group(root, L.CONTROLS)
    cg.create_array(
        L.VALUES,
        shape=(n, 3, len(control_stats)),
        chunks=(K, 3, len(control_stats)),
        dtype="float32",
        fill_value=float("nan"),
        **codecs,
        config=integrity.ARRAY_CONFIG,
        dimension_names=(L.DIM_SAMPLE, L.DIM_RGB, L.DIM_STAT),
        attributes={"stat_names": list(control_stats), "long_name": "pixel statistics of the model input"},
    )
    c = cg.create_array(
        L.DIM_STAT,
        shape=(len(control_stats),),
        dtype=str,
        **codecs,
        config=integrity.ARRAY_CONFIG,
        dimension_names=(L.DIM_STAT,),
    )
    c[...] = np.array(list(control_stats), dtype=np.dtypes.StringDType())
    r = cg.create_array(
        L.DIM_RGB, shape=(3,), dtype=str, **codecs, config=integrity.ARRAY_CONFIG, dimension_names=(L.DIM_RGB,)
    )
    r[...] = np.array(["r", "g", "b"], dtype=np.dtypes.StringDType())
    _consolidate(root.store, L.CONTROLS)
    _consolidate(root.store, L.SAMPLES)
    store = Store(target, mode="r+", storage_options=storage_options)
    store.update_attrs(status=final_status)  # also consolidates the root
    return store


def open_store(path: str | os.PathLike, mode: str = "r", *, storage_options: dict | None = None) -> Store:
    """Open an existing store (``mode="r+"`` to write chunks); InputError if it is not one."""
    if mode not in ("r", "r+"):
        raise ValueError(f"open_store: mode must be 'r' or 'r+', got {mode!r}")
    return Store(path, mode=mode, storage_options=storage_options)
