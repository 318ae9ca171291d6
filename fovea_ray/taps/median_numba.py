"""Exact per-row medians of float32 maps by compiled (numba) passes.

The CPU path of :func:`fovea_ray.taps.reductions.median_rows` when numba imports (it is a
dependency; without it the numpy bracketed selection of ``reductions`` runs instead, with
the same values). The cost of a median on a CPU is the number of times a map is read from
memory, so each map is read once for every row and once more for the rows that need a
selection, each read doing all the work for that row while it sits in the L1 cache:

1. :func:`_classify`, one pass per row: counts ``x < 0``, ``x <= 0`` and NaN. A row with
   a NaN has the median NaN (numpy's). A row whose two middle ranks ``k1 = (n-1)//2``,
   ``k2 = n//2`` both hold a zero (``#(x < 0) <= k1`` and ``#(x <= 0) > k2``: about half
   the channels of a post-ReLU map) has the median 0 exactly. Every other row copies a
   lattice sample (every ``step``-th value) into a block, which numpy sorts (its
   vectorised sort); rows shorter than ``BRACKET_MIN_LENGTH`` copy the whole row, and
   their median is read from the sorted copy.
2. :func:`_bracket`, for the rows left: two of the sample's order statistics, ``lo`` and
   ``hi``, about 3 standard errors either side of the median, bracket its ranks. One
   pass counts ``B = #(x <= lo)`` and copies the values in ``(lo, hi]`` (about 15 % of
   the row) into a block, padded with +inf, which numpy sorts; ranks ``k`` below ``B``
   hold ``lo`` (checked: ``#(x < lo) <= k1``), the others are read at ``k - B`` in the
   sorted block. A row whose bracket misses (3 standard errors: rare) is sorted whole.

Comparisons in step 2 are made on integer keys of the float bits (``s ^ ((s >> 31) &
0x7fffffff)``: ordered like the floats, with -0.0 just below +0.0), so that a value's
membership of ``(lo, hi]`` is one unsigned comparison; this only splits the tie between
the two zeros, and a median whose middle ranks are both zero never gets here.

The kernels compile on first use and are cached beside this file (numba's ``cache=True``;
a fresh process then loads them in about 1 s, numba's import included).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["median_rows_numba"]

#: Rows shorter than this are sorted whole (the bracket's fixed costs would dominate).
BRACKET_MIN_LENGTH = 512


@njit(nogil=True, cache=True, inline="always")
def _key(bits):
    # Float bits (int32) -> integer keys in the floats' order (int64 after numba's promotion).
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


@njit(nogil=True, cache=True)
def _classify(rows, bits, out, maxima, sample, work, step):  # pragma: no cover - compiled
    n_rows, n = rows.shape
    k1 = (n - 1) // 2
    k2 = n // 2
    m = sample.shape[1]
    want_max = maxima.shape[0] == n_rows
    n_work = 0
    for r in range(n_rows):
        row = rows[r]
        negative = np.int32(0)
        nonpositive = np.int32(0)
        nan = np.int32(0)
        if want_max:
            keys = bits[r]
            top = np.int32(-2147483648)
            for i in range(n):
                x = row[i]
                negative += np.int32(x < 0)
                nonpositive += np.int32(x <= 0)
                nan += np.int32(x != x)
                top = max(top, np.int32(_key(keys[i])))
            maxima[r] = np.int32(_key(top))  # the key of the largest value, back to its bits
        else:
            for i in range(n):
                x = row[i]
                negative += np.int32(x < 0)
                nonpositive += np.int32(x <= 0)
                nan += np.int32(x != x)
        if nan:
            out[r] = np.nan
            if want_max:
                maxima[r] = 0x7FC00000  # NaN, as torch.amax gives
        elif negative <= k1 and nonpositive > k2:
            out[r] = 0.0
        else:
            s = sample[n_work]
            for j in range(m):
                s[j] = row[j * step]
            work[n_work] = r
            n_work += 1
    return n_work


@njit(nogil=True, cache=True)
def _bracket(rows, bits, work, lo, hi, block, below, inside, ok):  # pragma: no cover - compiled
    n = rows.shape[1]
    width = block.shape[1]
    k1 = (n - 1) // 2
    k2 = n // 2
    buf = np.empty(n + 1, np.float32)
    for w in range(work.shape[0]):
        r = work[w]
        keys = bits[r]
        values = rows[r]
        lo_key = _key(lo[w])
        hi_key = _key(hi[w])
        at_or_below = np.int32(0)
        for i in range(n):
            at_or_below += np.int32(_key(keys[i]) <= lo_key)
        count = 0
        if hi_key > lo_key:
            base = np.uint64(lo_key + 1)
            span = np.uint64(hi_key - lo_key - 1)
            for i in range(n):  # branch-free compaction of the values in (lo, hi]
                buf[count] = values[i]
                count += np.intp(np.uint64(_key(keys[i])) - base <= span)
        good = at_or_below + count > k2 and count <= width
        if good and k1 < at_or_below:  # rank k1 holds lo only if nothing below lo takes it
            strictly_below = np.int32(0)
            for i in range(n):
                strictly_below += np.int32(_key(keys[i]) < lo_key)
            good = strictly_below <= k1
        kept = min(count, width)
        for j in range(kept):
            block[w, j] = buf[j]
        below[w] = at_or_below
        inside[w] = count
        ok[w] = good


@njit(nogil=True, cache=True)
def _pad(block, inside, width):  # pragma: no cover - compiled
    for w in range(block.shape[0]):
        for j in range(min(inside[w], width), width):
            block[w, j] = np.inf


def _sorted_median(ordered: np.ndarray) -> np.ndarray:
    n = ordered.shape[1]
    with np.errstate(invalid="ignore"):  # -inf + inf is NaN, as in np.median
        return (ordered[:, (n - 1) // 2] + ordered[:, n // 2]) * np.float32(0.5)


#: The bracket's sample takes every STEP-th value of a row (a prime, so that on a
#: flattened H x W map the sample is a lattice over all columns, unless W is a multiple).
_STEPS = (7, 11, 13, 5, 3)
#: Half-width of the bracket in standard errors of the sample median's rank.
_BRACKET_Z = 3.0


def median_rows_numba(rows: np.ndarray, width: int | None = None, maxima: np.ndarray | None = None) -> np.ndarray:
    """Exact medians (numpy's definition) of the rows of a C-contiguous float32 ``(R, n)``
    array, ``n >= 1``: NaN for a row holding NaN, else the mean of the two middle values.
    ``width``: the map's width when rows are flattened H x W maps (keeps the sample a
    lattice). ``maxima``: an ``(R,)`` float32 array that, when given, receives each row's
    maximum from the same pass (NaN for a row holding NaN, as ``torch.amax``)."""
    n_rows, n = rows.shape
    k1, k2 = (n - 1) // 2, n // 2
    step = 1 if n < BRACKET_MIN_LENGTH else next((p for p in _STEPS if width is None or width % p), _STEPS[0])
    m = len(range(0, n, step))
    out = np.empty(n_rows, dtype=np.float32)
    sample = np.empty((n_rows, m), dtype=np.float32)
    work = np.empty(n_rows, dtype=np.int64)
    bits = rows.view(np.int32)
    max_bits = np.empty(0, dtype=np.int32) if maxima is None else maxima.view(np.int32)
    n_work = _classify(rows, bits, out, max_bits, sample, work, step)
    if n_work == 0:
        return out
    work = work[:n_work]
    sample = sample[:n_work]
    sample.sort(axis=1)
    if step == 1:  # the sample is the row
        out[work] = _sorted_median(sample)
        return out
    half = _BRACKET_Z * 0.5 * math.sqrt(m)
    j_lo = max(0, int(m * k1 / n - half))
    j_hi = min(m - 1, int(math.ceil(m * k2 / n + half)))
    lo = np.ascontiguousarray(sample[:, j_lo])
    hi = np.ascontiguousarray(sample[:, j_hi])
    # Room for twice the expected number of values in (lo, hi]; a row with more is sorted whole.
    block_width = min(n, int(2 * n * (j_hi - j_lo + 1) / m) + 16)
    block = np.empty((n_work, block_width), dtype=np.float32)
    below = np.empty(n_work, dtype=np.int64)
    inside = np.empty(n_work, dtype=np.int64)
    ok = np.empty(n_work, dtype=np.bool_)
    _bracket(rows, bits, work, lo.view(np.int32), hi.view(np.int32), block, below, inside, ok)
    kmax = int(min(block_width, inside.max(initial=0)))
    if kmax:
        _pad(block, inside, kmax)
        ordered = np.sort(block[:, :kmax], axis=1)
        index = np.arange(n_work)

        def at(k: int) -> np.ndarray:
            return np.where(k < below, lo, ordered[index, np.clip(k - below, 0, kmax - 1)])
    else:

        def at(k: int) -> np.ndarray:
            return lo

    with np.errstate(invalid="ignore"):  # -inf + inf, as in np.median
        median = (at(k1) + at(k2)) * np.float32(0.5)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        median[bad] = _sorted_median(np.sort(rows[work[bad]], axis=1))
    out[work] = median
    return out
