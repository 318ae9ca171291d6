"""Per-channel reductions of feature maps, computed where the map lives.

Each statistic reduces one channel's map over its valid H x W positions to one float.
Names (the ``stats`` argument of :func:`fovea_ray.taps.capture`):

``mean``
    arithmetic mean.
``median``
    the exact median with numpy's definition: for an even count, the mean of the two
    middle values (``torch.median`` would return the lower one).
``max`` / ``min``
    extremes.
``std``
    population standard deviation (``ddof=0``, numpy's default).
``topk_mean@K``
    mean of the K largest values; ``K`` an integer count (``topk_mean@10``) or a fraction of
    the valid positions in (0, 1) (``topk_mean@0.05``; at least one value). ``topk_mean``
    alone means ``topk_mean@0.1``. K is clipped to the number of valid positions.
``frac_pos``
    fraction of positions with a strictly positive value.

The study (Gizdov & Akhtari, "Exploration of resolution specialization in neurons of
deep convolutional neural networks", section 3) reduced each 1024 x 60 x 60 map to mean,
median and max. Top-k pooling follows the "top-k mean" summaries used for
class-activation maps (e.g. Durand et al., "WILDCAT", CVPR 2017).

Order statistics come from one sort per map: on the CPU numpy's vectorised (AVX-512/AVX2)
sort split across torch's threads, on other devices ``torch.sort``. On post-ReLU maps,
half of whose values are tied at zero, numpy's sort is 1.2-2.5x faster than
``torch.median`` and 4-7x faster than ``np.partition`` here (ties slow selection
algorithms down; ``benchmarks/README.md``). Both give the same values
(``test_taps_reductions``).
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

__all__ = ["BASIC_STATS", "DEFAULT_STATS", "StatSpec", "parse_stats", "reduce_rows"]

#: The default of :func:`fovea_ray.taps.capture` (the study's three statistics).
DEFAULT_STATS: tuple[str, ...] = ("mean", "median", "max")
#: The five basic statistics (a good default for a full sweep).
BASIC_STATS: tuple[str, ...] = ("mean", "median", "max", "min", "std")

_SIMPLE = ("mean", "median", "max", "min", "std", "frac_pos")
_TOPK = re.compile(r"^topk_mean(?:@(?P<k>[0-9]*\.?[0-9]+(?:[eE]-?[0-9]+)?))?$")


@dataclass(frozen=True)
class StatSpec:
    """One parsed statistic: ``kind`` is a simple name or ``topk_mean``; ``k`` its size."""

    name: str
    kind: str
    k: float | None = None

    def topk_count(self, n: int) -> int:
        """K for a map of ``n`` valid positions (fractions rounded, at least 1, at most n)."""
        assert self.k is not None
        k = self.k * n if self.k < 1 else self.k
        return int(min(n, max(1, round(k))))


def parse_stats(stats: str | Iterable[str]) -> list[StatSpec]:
    """Validate and canonicalise statistic names (see the module docstring).

    Raises ValueError naming the bad entry; a name may appear only once.
    """
    if isinstance(stats, str):
        stats = [s for s in re.split(r"[,\s]+", stats) if s]
    specs: list[StatSpec] = []
    for raw in stats:
        if not isinstance(raw, str):
            raise ValueError(f"statistic names must be strings, got {raw!r}")
        name = raw.strip().lower()
        if name in _SIMPLE:
            specs.append(StatSpec(name, name))
            continue
        match = _TOPK.match(name)
        if match is None:
            raise ValueError(f"unknown statistic {raw!r}; choose from {', '.join(_SIMPLE)}, topk_mean@K (K a count or a fraction in (0, 1))")
        k = float(match.group("k")) if match.group("k") else 0.1
        if not (0 < k < 1 or (k >= 1 and k == int(k))):
            raise ValueError(f"bad top-k size in {raw!r}: K must be a whole count >= 1 or a fraction in (0, 1)")
        canonical = f"topk_mean@{int(k)}" if k >= 1 else f"topk_mean@{k:g}"
        specs.append(StatSpec(canonical, "topk_mean", k))
    if not specs:
        raise ValueError("no statistics requested")
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"statistics listed twice: {', '.join(dupes)}")
    return specs


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


def _sort_numpy(rows: torch.Tensor) -> torch.Tensor:
    """Rows sorted ascending, by numpy, across torch's intra-op threads (numpy sorts
    release the GIL). numpy's vectorised quicksort copes with the many ties of post-ReLU
    maps, where selection algorithms (``np.partition``) slow down several-fold."""
    array = rows.contiguous().numpy()
    out = np.empty_like(array)
    workers = max(1, min(torch.get_num_threads(), array.shape[0]))
    if workers == 1 or array.size < _PARALLEL_MIN_ELEMENTS:
        out[...] = array
        out.sort(axis=-1)
        return torch.from_numpy(out)
    bounds = np.linspace(0, array.shape[0], workers + 1).astype(int)

    def work(i: int) -> None:
        part = out[bounds[i] : bounds[i + 1]]
        part[...] = array[bounds[i] : bounds[i + 1]]
        part.sort(axis=-1)

    list(_pool(workers).map(work, range(workers)))
    return torch.from_numpy(out)


def reduce_rows(rows: torch.Tensor, specs: Sequence[StatSpec], *, median_backend: str = "auto") -> torch.Tensor:
    """Reduce each row of ``rows`` (R, N) to the statistics ``specs`` -> (R, S) float32.

    Order statistics (median, top-k mean) come from one sort per call, which max and min
    then reuse. ``median_backend`` picks the sort: ``"numpy"`` (CPU tensors only),
    ``"torch"``, or ``"auto"`` (numpy on the CPU, ``torch.sort`` elsewhere). Both give
    identical values. Rows must be non-empty.
    """
    if rows.ndim != 2 or rows.shape[-1] == 0:
        raise ValueError(f"reduce_rows needs a non-empty (R, N) tensor, got shape {tuple(rows.shape)}")
    rows = rows.detach()
    if rows.dtype != torch.float32:
        rows = rows.float()
    n = rows.shape[-1]
    ordered: torch.Tensor | None = None
    if any(spec.kind in ("median", "topk_mean") for spec in specs):
        backend = median_backend
        if backend == "auto":
            backend = "numpy" if rows.device.type == "cpu" else "torch"
        if backend == "numpy" and rows.device.type != "cpu":
            raise ValueError("median_backend='numpy' needs a CPU tensor")
        ordered = _sort_numpy(rows) if backend == "numpy" else rows.sort(dim=-1).values
    out = torch.empty(rows.shape[0], len(specs), dtype=torch.float32, device=rows.device)
    for j, spec in enumerate(specs):
        kind = spec.kind
        if kind == "mean":
            value = rows.mean(dim=-1)
        elif kind == "median":
            value = (ordered[:, (n - 1) // 2] + ordered[:, n // 2]) * 0.5
        elif kind == "max":
            value = ordered[:, -1] if ordered is not None else rows.amax(dim=-1)
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
