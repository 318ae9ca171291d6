"""Per-channel reductions of feature maps, computed where the map lives.

Each statistic reduces one channel's map over its valid H x W positions to one float.
The names, their parsing and the defaults live in :mod:`fovea_ray.names` (torch-free).

The study (Gizdov & Akhtari, "Exploration of resolution specialization in neurons of
deep convolutional neural networks", section 3) reduced each 1024 x 60 x 60 map to mean,
median and max. Top-k pooling follows the "top-k mean" summaries used for
class-activation maps (e.g. Durand et al., "WILDCAT", CVPR 2017).

On the CPU the exact median, the max and the mean come from one compiled pass per row
(numba, :mod:`fovea_ray.taps.median_numba`): 16-lane vector loops count zeros and
negatives, find the max and a float64 sum, and vectorised counting probes then close in
on the middle ranks; the rows run on torch's own OpenMP team. A ResNet-50's 16 bottleneck
maps at 224 px (batch 8, 44 M values) take ~45-55 ms with two threads
(``benchmarks/README.md``).

Without numba a bracketed selection runs as numpy passes (:func:`median_rows` with
``method="numpy"``): a lattice sample of each row is sorted, two of its order statistics
bracket the median's ranks, whole-row counts confirm the bracket, and only the values
inside it are sorted; rows whose two middle ranks are zeros are found first by two
counting passes. On both paths a row whose bracket misses, or (numpy path) that holds NaN
or infinities, is sorted whole, so the value is always exact. Top-k means, and other
devices, use one full sort per map (``torch.sort`` off the CPU). The sorts are numpy's
vectorised (AVX-512/AVX2) sorts split across torch's threads: on post-ReLU maps, half of
whose values are tied at zero, ``np.partition``, ``torch.kthvalue`` and ``torch.median``
are several times slower (ties slow selection down). All paths give the same values
(``test_taps_reductions``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from fovea_ray.names import BASIC_STATS, DEFAULT_STATS, StatSpec, parse_stats

__all__ = ["BASIC_STATS", "DEFAULT_STATS", "StatSpec", "median_rows", "parse_stats", "reduce_rows"]


_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
# Below this many elements a sort is too short to be worth splitting across threads.
_PARALLEL_MIN_ELEMENTS = 1 << 18


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE != workers:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fovea-ray-sort")
        _POOL_SIZE = workers
    return _POOL


def _split_rows(array: np.ndarray, work, out: np.ndarray) -> None:
    """``work(array[a:b], out[a:b])`` over row blocks, across torch's intra-op threads
    (numpy's sorts, comparisons and copies release the GIL)."""
    workers = max(1, min(torch.get_num_threads(), array.shape[0]))
    if workers == 1 or array.size < _PARALLEL_MIN_ELEMENTS:
        work(array, out)
        return
    bounds = np.linspace(0, array.shape[0], workers + 1).astype(int)
    list(
        _pool(workers).map(
            lambda i: work(array[bounds[i] : bounds[i + 1]], out[bounds[i] : bounds[i + 1]]), range(workers)
        )
    )


def _sort_numpy(rows: torch.Tensor) -> torch.Tensor:
    """Rows sorted ascending, by numpy (vectorised quicksort, which copes with the many
    ties of post-ReLU maps, where selection algorithms such as ``np.partition`` slow
    down several-fold)."""
    array = rows.contiguous().numpy()
    out = np.empty_like(array)

    def work(part: np.ndarray, dest: np.ndarray) -> None:
        dest[...] = part
        dest.sort(axis=-1)

    _split_rows(array, work, out)
    return torch.from_numpy(out)


#: Rows shorter than this are sorted whole (the bracket's fixed costs would dominate).
BRACKET_MIN_LENGTH = 512
#: The bracket's sample takes every STEP-th value of a row (a prime, so that on a
#: flattened H x W map the sample is a lattice over all columns, unless W is a multiple).
_STEPS = (7, 11, 13, 5, 3)
#: Half-width of the bracket in standard errors of the sample median's rank.
_BRACKET_Z = 3.0


def _median_sorted_whole(rows: np.ndarray) -> np.ndarray:
    n = rows.shape[1]
    ordered = np.sort(rows, axis=-1)
    median = (ordered[:, (n - 1) // 2] + ordered[:, n // 2]) * np.float32(0.5)
    return np.where(np.isnan(ordered[:, -1]), np.float32(np.nan), median)  # NaN sorts last


def _median_bracketed(rows: np.ndarray, width: int | None) -> np.ndarray:
    """Exact medians (numpy's definition) of float32 ``rows`` (R, n) by bracketed selection.

    1. Sort a lattice sample (every ``step``-th value) and take two of its order
       statistics, ``lo`` and ``hi``, about 3 standard errors either side of the median.
    2. Count ``B = #(x <= lo)`` and ``D = #(x <= hi)`` in the whole row. The median's
       ranks ``k = (n-1)//2, n//2`` are bracketed when ``k2 < D``; a rank below ``B`` has
       the value ``lo`` exactly when ``#(x < lo) <= k`` (checked for those rows only).
    3. Gather the values in ``(lo, hi]`` (a few per cent of the row), sort them per row,
       and read rank ``k - B``.

    Rows whose bracket misses, or whose values are not all finite, are sorted whole (a
    row holding NaN has a NaN median, as with ``np.median``).
    """
    R, n = rows.shape
    k1, k2 = (n - 1) // 2, n // 2
    step = next((p for p in _STEPS if width is None or width % p), _STEPS[0])
    sample = rows[:, ::step].copy()
    sample.sort(axis=-1)
    m = sample.shape[1]
    half = _BRACKET_Z * 0.5 * math.sqrt(m)
    j_lo = max(0, int(m * k1 / n - half))
    j_hi = min(m - 1, int(math.ceil(m * k2 / n + half)))
    lo, hi = sample[:, j_lo : j_lo + 1], sample[:, j_hi : j_hi + 1]
    le_lo = rows <= lo
    le_hi = rows <= hi
    below = np.count_nonzero(le_lo, axis=1)  # B
    upto = np.count_nonzero(le_hi, axis=1)  # D
    inside = np.logical_xor(le_hi, le_lo, out=le_hi)  # lo < x <= hi (lo <= hi)
    del le_lo
    values = np.compress(inside.ravel(), rows.ravel())
    counts = upto - below
    kmax = int(counts.max(initial=0))
    ok = (k2 < upto) & np.isfinite(rows.sum(axis=1))
    tied = ok & (k1 < below)
    if tied.any():
        idx = np.flatnonzero(tied)
        ok[idx] &= np.count_nonzero(rows[idx] < lo[idx], axis=1) <= k1
    low = lo[:, 0]
    if kmax:
        # Scatter each row's inside values into a (R, kmax) block padded with +inf; sort rows.
        start = np.cumsum(counts) - counts
        flat = np.arange(values.size, dtype=np.int64) + np.repeat(np.arange(R, dtype=np.int64) * kmax - start, counts)
        block = np.full(R * kmax, np.inf, dtype=np.float32)
        block[flat] = values
        block = block.reshape(R, kmax)
        block.sort(axis=-1)
        rows_idx = np.arange(R)

        def at(k: int) -> np.ndarray:
            return np.where(k >= below, block[rows_idx, np.clip(k - below, 0, kmax - 1)], low)
    else:

        def at(k: int) -> np.ndarray:
            return low

    median = (at(k1) + at(k2)) * np.float32(0.5)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        median[bad] = _median_sorted_whole(rows[bad])
    return median


def _median_zero_ties(rows: np.ndarray, median) -> np.ndarray:
    """Medians of ``rows``, exactly 0 where both middle ranks hold a 0, else ``median(rows)``.

    A map after a ReLU is about half zeros, so about half of its channels have the median
    0: exactly those where ``#(x < 0) <= k1`` and ``#(x <= 0) > k2`` for the middle ranks
    ``k1 = (n-1)//2``, ``k2 = n//2``. Two counting passes find them, and only the other rows
    go through the selection (a row holding NaN keeps its NaN median).
    """
    n = rows.shape[1]
    k1, k2 = (n - 1) // 2, n // 2
    zero = (np.count_nonzero(rows < 0, axis=1) <= k1) & (np.count_nonzero(rows <= 0, axis=1) > k2)
    if not zero.any():
        return median(rows)
    idx = np.flatnonzero(zero)
    zero[idx[np.isnan(rows[idx].max(axis=1))]] = False  # max propagates NaN
    out = np.zeros(rows.shape[0], dtype=np.float32)
    rest = np.flatnonzero(~zero)
    if rest.size:
        out[rest] = median(rows[rest])
    return out


_COMPILED: object = None  # median_numba.summarise_rows, once looked up; False without numba


def _compiled():
    """``median_numba.summarise_rows``, or None where numba does not import or its kernels
    do not compile here (imported on first use: numba takes ~0.3 s to import; a failed
    compilation warns once and the numpy and torch paths run instead)."""
    global _COMPILED
    if _COMPILED is None:
        try:
            from fovea_ray.taps.median_numba import summarise_rows

            summarise_rows(np.arange(40, dtype=np.float32).reshape(2, 20) - 20)  # compiles or loads the kernels
        except ImportError:
            summarise_rows = False
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: use the other paths
            warnings.warn(
                f"fovea-ray: the compiled reductions do not compile here ({type(exc).__name__}: {exc}); "
                "using the numpy median and torch's mean and max",
                RuntimeWarning,
                stacklevel=2,
            )
            summarise_rows = False
        _COMPILED = summarise_rows
    return _COMPILED or None


def _summary_compiled(array: np.ndarray, *, median: bool) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``(median or None, max, mean)`` of the rows of a C-contiguous float32 array by the
    compiled passes, on torch's intra-op threads (in torch's own OpenMP team where it is
    libgomp: no second team competes with torch's for the cores)."""
    return _compiled()(array, median=median, threads=torch.get_num_threads())


def median_rows(rows: torch.Tensor, *, width: int | None = None, method: str = "auto") -> torch.Tensor:
    """Exact per-row medians of a CPU float32 ``(R, n)`` tensor (numpy's definition: the
    mean of the two middle values; NaN for a row holding NaN).

    ``method``: ``"compiled"`` (numba passes, :mod:`fovea_ray.taps.median_numba`), ``"numpy"``
    (bracketed selection by numpy passes for rows of at least :data:`BRACKET_MIN_LENGTH`
    values, else sorting), or ``"auto"`` (compiled where numba imports). Both give the same
    values. ``width``: the map's width when rows are flattened H x W maps (keeps the
    bracket's sample a lattice)."""
    if method not in ("auto", "compiled", "numpy"):
        raise ValueError(f"method must be 'auto', 'compiled' or 'numpy', got {method!r}")
    array = rows.detach().contiguous().numpy()
    if array.dtype != np.float32:
        raise ValueError(f"median_rows needs float32 rows, got {array.dtype}")
    out = np.empty(array.shape[0], dtype=np.float32)
    compiled = _compiled() if method != "numpy" else None
    if method == "compiled" and compiled is None:
        raise ValueError("median_rows(method='compiled') needs numba, which does not import here")
    if array.shape[0] == 0:
        return torch.from_numpy(out)
    if compiled is not None:
        return torch.from_numpy(_summary_compiled(array, median=True)[0])
    if array.shape[1] < BRACKET_MIN_LENGTH:

        def median(part: np.ndarray) -> np.ndarray:
            return _median_sorted_whole(part)
    else:

        def median(part: np.ndarray) -> np.ndarray:
            return _median_bracketed(part, width)

    def work(part: np.ndarray, dest: np.ndarray) -> None:
        dest[...] = _median_zero_ties(part, median)

    _split_rows(array, work, out)
    return torch.from_numpy(out)


def reduce_rows(
    rows: torch.Tensor, specs: Sequence[StatSpec], *, median_backend: str = "auto", width: int | None = None
) -> torch.Tensor:
    """Reduce each row of ``rows`` (R, N) to the statistics ``specs`` -> (R, S) float32.

    ``median_backend`` picks how order statistics are found: ``"numpy"`` (CPU tensors
    only: :func:`median_rows` for medians; one numpy sort per row for top-k means),
    ``"torch"`` (one ``torch.sort`` per row), or ``"auto"`` (numpy on the CPU, torch
    elsewhere). All give identical order statistics (median, max, min, top-k means).
    Where numba imports, the ``"numpy"`` backend takes the median, max and mean from one
    compiled pass per row (:mod:`fovea_ray.taps.median_numba`); that mean is summed in
    float64 and rounded once, so it can differ from torch's float32 mean (the other
    backends and devices) in the last bit or so. ``width``: the maps' width when rows are
    flattened H x W maps (a hint for the median's sample). Rows must be non-empty.
    """
    if rows.ndim != 2 or rows.shape[-1] == 0:
        raise ValueError(f"reduce_rows needs a non-empty (R, N) tensor, got shape {tuple(rows.shape)}")
    rows = rows.detach()
    if rows.dtype != torch.float32:
        rows = rows.float()
    n = rows.shape[-1]
    backend = median_backend
    if backend == "auto":
        backend = "numpy" if rows.device.type == "cpu" else "torch"
    if backend == "numpy" and rows.device.type != "cpu":
        raise ValueError("median_backend='numpy' needs a CPU tensor")
    kinds = {spec.kind for spec in specs}
    ordered: torch.Tensor | None = None
    median: torch.Tensor | None = None
    maxima: torch.Tensor | None = None
    means: torch.Tensor | None = None
    if "topk_mean" in kinds or ("median" in kinds and backend == "torch"):
        ordered = _sort_numpy(rows) if backend == "numpy" else rows.sort(dim=-1).values
    if backend == "numpy" and kinds & {"mean", "median", "max"} and _compiled() is not None:
        # One compiled pass over each row gives its max and float64-summed mean, and the
        # median where the rows are not sorted anyway (exact: :mod:`.median_numba`).
        array = rows.contiguous().numpy()
        med, top, avg = _summary_compiled(array, median="median" in kinds and ordered is None)
        median = None if med is None else torch.from_numpy(med)
        maxima, means = torch.from_numpy(top), torch.from_numpy(avg)
    elif "median" in kinds and ordered is None:
        median = median_rows(rows, width=width)
    out = torch.empty(rows.shape[0], len(specs), dtype=torch.float32, device=rows.device)
    for j, spec in enumerate(specs):
        kind = spec.kind
        if kind == "mean":
            value = means if means is not None else rows.mean(dim=-1)
        elif kind == "median":
            if median is None:  # NaN sorts last; a row holding NaN has a NaN median, as in numpy
                median = (ordered[:, (n - 1) // 2] + ordered[:, n // 2]) * 0.5
                median = median.masked_fill(ordered[:, -1].isnan(), math.nan)
            value = median
        elif kind == "max":
            value = maxima if maxima is not None else ordered[:, -1] if ordered is not None else rows.amax(dim=-1)
        elif kind == "min":
            value = ordered[:, 0] if ordered is not None else rows.amin(dim=-1)
        elif kind == "std":
            value = rows.std(dim=-1, correction=0)
        elif kind == "frac_pos":
            value = (rows > 0).sum(dim=-1, dtype=torch.float32) / n
        elif kind == "topk_mean":
            value = ordered[:, n - spec.topk_count(n) :].mean(dim=-1)
        else:  # pragma: no cover - parse_stats admits no other kind
            raise ValueError(f"unknown statistic {spec.name!r}")
        out[:, j] = value
    return out


def valid_extent(image_size: int, feature_size: int, padded_size: int) -> int:
    """How many of a feature map's positions along one axis lie inside the image.

    A map of ``feature_size`` positions computed from a padded input of ``padded_size``
    pixels has stride ``padded_size / feature_size``; position j is centred on input pixel
    ``j * stride``, so the valid positions are those with ``j * stride < image_size``.
    """
    if feature_size == padded_size:
        return image_size
    return max(1, min(feature_size, math.ceil(image_size * feature_size / padded_size)))
