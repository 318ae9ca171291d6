"""Exact per-row medians, maxima and means of float32 maps by compiled (numba) passes.

The CPU path of :func:`fovea_ray.taps.reductions.reduce_rows` when numba imports (the
``[fast]`` extra; without it the numpy bracketed selection of ``reductions`` and torch's
mean and max run instead). The cost of a reduction on a CPU is how many times a map is
read and how many values each read handles per instruction, so every pass over values is
an explicit 16-lane vector loop (LLVM IR emitted through numba intrinsics, below), and no
value is sorted except the last few around the median. For each row (:func:`_reduce_block`):

1. One pass (:func:`_row_summary`) counts ``x < 0``, ``x <= 0`` and NaN, and finds the
   maximum and the float64 sum. A row with a NaN has the median, maximum and mean NaN
   (numpy's and torch's). A row whose two middle ranks ``k1 = (n-1)//2``, ``k2 = n//2``
   both hold a zero (``#(x < 0) <= k1`` and ``#(x <= 0) > k2``: about half the channels
   of a post-ReLU map) has the median 0 exactly, and is done.
2. Otherwise the counts of step 1 bound the middle ranks by two keys, ``a`` and ``b``
   (integer images of floats, ordered like them): ``#(x <= a) <= k1`` and
   ``#(x <= b) > k2``; for a post-ReLU row ``a`` is +0.0 and ``b`` the maximum.
   :func:`_middle_pair` then probes: each probe ``p`` costs one vectorised count of
   ``#(x <= p)`` and moves ``a`` or ``b`` to ``p``. The first probe is the row's mean,
   the next ones step an octave towards the ranks, and then the keys are bisected. Once
   ``(a, b]`` holds at most 192 values they are compressed into a buffer (``vcompressps``
   on AVX-512) and the probes count there; once it holds at most 24 they are gathered,
   and the two middle values are read off by counting each one's ranks. A ResNet-50
   layer1 row (3,136 values) takes about 8 probes, a layer4 row (49 values) about 2.

The result is exact, including ties, signed zeros and infinities (numpy's median: the
mean of the two middle values, so ``(-inf + inf) / 2`` is NaN). The mean is the float64
sum divided by ``n``, rounded once to float32 (so it is the correctly rounded mean up to
the sum's float64 round-off, where torch's float32 mean accumulates in float32).

:func:`summarise_rows` with ``threads > 1`` runs the rows in chunks on torch's own OpenMP
team (a C entry point, :func:`_team_task`, through :mod:`fovea_ray.taps.openmp`), so no
second pool of threads competes with torch's spinning idle threads inside a forward pass.

The vector loops use LLVM's target-independent intrinsics (``llvm.masked.compressstore``,
``llvm.vector.reduce.*``): LLVM lowers the same IR to AVX-512, AVX2, NEON or scalar code,
with the same values. Rows need no alignment or padding: the last ``n % 16`` values of a
row go through a 16-lane scratch copy under a lane mask (the buffers this module
allocates have 16 spare values and are read directly).

The kernels compile on first use and are cached beside this file (numba's ``cache=True``;
a fresh process then loads them in about 1 s, numba's import included).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["summarise_rows"]

# ---------------------------------------------------------------------------------------
# 16-lane vector loops, as LLVM IR.

_LANES = 16
_I1, _I16, _I32, _I64 = ir.IntType(1), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_F32, _F64 = ir.FloatType(), ir.DoubleType()
_VF = ir.VectorType(_F32, _LANES)
_VD = ir.VectorType(_F64, _LANES)
_VI = ir.VectorType(_I32, _LANES)
_VM = ir.VectorType(_I1, _LANES)


def _splat(builder: ir.IRBuilder, value: ir.Value, vtype: ir.VectorType) -> ir.Value:
    undef = ir.Constant(vtype, ir.Undefined)
    lane0 = builder.insert_element(undef, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(lane0, undef, ir.Constant(_VI, [0] * _LANES))


def _declare(builder: ir.IRBuilder, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


def _counter(builder: ir.IRBuilder) -> ir.Value:
    return cgutils.alloca_once_value(builder, ir.Constant(_VI, [0] * _LANES))


def _count(builder: ir.IRBuilder, counter: ir.Value, mask: ir.Value) -> None:
    # A true lane sign-extends to -1: subtracting the mask adds one per true lane.
    builder.store(builder.sub(builder.load(counter), builder.sext(mask, _VI)), counter)


def _total(builder: ir.IRBuilder, counter: ir.Value) -> ir.Value:
    add = _declare(builder, "llvm.vector.reduce.add.v16i32", _I32, [_VI])
    return builder.sext(builder.call(add, [builder.load(counter)]), _I64)


def _vector_loop(builder: ir.IRBuilder, base: ir.Value, n: ir.Value, body, padded: ir.Value | None = None) -> None:
    """``body(vector, valid)`` over the 16-value blocks of ``base[0:n]``: ``valid`` is None
    for the full blocks, and the lane mask of the last ``n % 16`` values for the tail. The
    tail is read through a zeroed scratch copy, so nothing past ``n`` is read, unless
    ``padded`` (an i1 value) is true: then the buffer has 16 spare values after ``n`` and
    the tail is one vector load."""
    full = builder.and_(n, ir.Constant(n.type, ~(_LANES - 1)))
    with cgutils.for_range_slice(builder, ir.Constant(n.type, 0), full, ir.Constant(n.type, _LANES)) as (i, _):
        body(builder.load(builder.bitcast(builder.gep(base, [i]), _VF.as_pointer()), align=4), None)
    rest = builder.sub(n, full)
    scratch = cgutils.alloca_once(builder, _F32, size=_LANES)
    with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(n.type, 0))):
        lanes = ir.Constant(_VI, list(range(_LANES)))
        valid = builder.icmp_signed("<", lanes, _splat(builder, builder.trunc(rest, _I32), _VI))
        tail = builder.bitcast(builder.gep(base, [full]), _VF.as_pointer())

        def copied() -> None:
            vector_ptr = builder.bitcast(scratch, _VF.as_pointer())
            builder.store(ir.Constant(_VF, [0.0] * _LANES), vector_ptr, align=4)
            with cgutils.for_range(builder, rest) as loop:
                src = builder.gep(base, [builder.add(full, loop.index)])
                builder.store(builder.load(src), builder.gep(scratch, [loop.index]))
            body(builder.load(vector_ptr, align=4), valid)

        if padded is None:
            copied()
        else:
            with builder.if_else(padded) as (direct, otherwise):
                with direct:
                    body(builder.load(tail, align=4), valid)
                with otherwise:
                    copied()


def _data(context, builder, array_type, array) -> ir.Value:
    return context.make_array(array_type)(context, builder, array).data


@intrinsic
def _row_summary(typingctx, flat, start, n):  # pragma: no cover - compiled
    """``(#(x < 0), #(x <= 0), #NaN, max, float64 sum)`` of ``flat[start:start+n]``, ``n >= 1``
    (the max of a row holding NaN is meaningless: callers check the NaN count first)."""
    signature = types.Tuple((types.int64, types.int64, types.int64, types.float32, types.float64))(flat, start, n)

    def codegen(context, builder, sig, args):
        base = builder.gep(_data(context, builder, sig.args[0], args[0]), [args[1]])
        negative, nonpositive, nan = _counter(builder), _counter(builder), _counter(builder)
        top = cgutils.alloca_once_value(builder, ir.Constant(_VF, [-math.inf] * _LANES))
        total = cgutils.alloca_once_value(builder, ir.Constant(_VD, [0.0] * _LANES))
        zero = ir.Constant(_VF, [0.0] * _LANES)
        maxnum = _declare(builder, "llvm.maxnum.v16f32", _VF, [_VF, _VF])

        def body(v, valid):
            masks = [
                builder.fcmp_ordered("<", v, zero),
                builder.fcmp_ordered("<=", v, zero),
                builder.fcmp_unordered("uno", v, v),
            ]
            for_max, for_sum = v, v
            if valid is not None:
                masks = [builder.and_(m, valid) for m in masks]
                for_max = builder.select(valid, v, ir.Constant(_VF, [-math.inf] * _LANES))
            for counter, mask in zip((negative, nonpositive, nan), masks, strict=True):
                _count(builder, counter, mask)
            builder.store(builder.call(maxnum, [builder.load(top), for_max]), top)
            builder.store(builder.fadd(builder.load(total), builder.fpext(for_sum, _VD)), total)

        _vector_loop(builder, base, args[2], body)
        reduce_max = _declare(builder, "llvm.vector.reduce.fmax.v16f32", _F32, [_VF])
        reduce_sum = _declare(builder, "llvm.vector.reduce.fadd.v16f64", _F64, [_F64, _VD])
        values = [
            _total(builder, negative),
            _total(builder, nonpositive),
            _total(builder, nan),
            builder.call(reduce_max, [builder.load(top)]),
            builder.call(reduce_sum, [ir.Constant(_F64, 0.0), builder.load(total)]),
        ]
        return context.make_tuple(builder, sig.return_type, values)

    return signature, codegen


@intrinsic
def _count_and_gather(typingctx, flat, start, n, lo, hi, dest, padded):  # pragma: no cover - compiled
    """One pass over ``flat[start:start+n]`` (no NaN): ``(#(x <= lo), #(x < lo), #(lo < x <= hi))``,
    the values in ``(lo, hi]`` stored in their order at ``dest[0:]``. A NaN ``lo`` bounds
    nothing below (the key below -inf's is a NaN)."""
    signature = types.UniTuple(types.int64, 3)(flat, start, n, lo, hi, dest, types.boolean)

    def codegen(context, builder, sig, args):
        base = builder.gep(_data(context, builder, sig.args[0], args[0]), [args[1]])
        out = _data(context, builder, sig.args[5], args[5])
        low, high = _splat(builder, args[3], _VF), _splat(builder, args[4], _VF)
        at_or_below, below = _counter(builder), _counter(builder)
        stored = cgutils.alloca_once_value(builder, ir.Constant(_I64, 0))
        compress = _declare(builder, "llvm.masked.compressstore.v16f32", ir.VoidType(), [_VF, out.type, _VM])
        popcount = _declare(builder, "llvm.ctpop.i16", _I16, [_I16])

        def body(v, valid):
            le = builder.fcmp_ordered("<=", v, low)
            lt = builder.fcmp_ordered("<", v, low)
            # x > lo unordered: a NaN lo is "no lower bound" (the rows hold no NaN here)
            inside = builder.and_(builder.fcmp_unordered(">", v, low), builder.fcmp_ordered("<=", v, high))
            if valid is not None:
                le, lt, inside = (builder.and_(m, valid) for m in (le, lt, inside))
            _count(builder, at_or_below, le)
            _count(builder, below, lt)
            offset = builder.load(stored)
            builder.call(compress, [v, builder.gep(out, [offset]), inside])
            added = builder.zext(builder.call(popcount, [builder.bitcast(inside, _I16)]), _I64)
            builder.store(builder.add(offset, added), stored)

        _vector_loop(builder, base, args[2], body, args[6])
        values = [_total(builder, at_or_below), _total(builder, below), builder.load(stored)]
        return context.make_tuple(builder, sig.return_type, values)

    return signature, codegen


@intrinsic
def _count_at_most(typingctx, flat, start, n, p, padded):  # pragma: no cover - compiled
    """``#(flat[start:start+n] <= p)``."""
    signature = types.int64(flat, start, n, p, types.boolean)

    def codegen(context, builder, sig, args):
        base = builder.gep(_data(context, builder, sig.args[0], args[0]), [args[1]])
        bound = _splat(builder, args[3], _VF)
        counter = _counter(builder)

        def body(v, valid):
            le = builder.fcmp_ordered("<=", v, bound)
            _count(builder, counter, le if valid is None else builder.and_(le, valid))

        _vector_loop(builder, base, args[2], body, args[4])
        return _total(builder, counter)

    return signature, codegen


@intrinsic
def _ranks_of(typingctx, flat, start, n, p, padded):  # pragma: no cover - compiled
    """``(#(x < p), #(x <= p))`` of ``flat[start:start+n]``: the ranks that hold ``p``."""
    signature = types.UniTuple(types.int64, 2)(flat, start, n, p, types.boolean)

    def codegen(context, builder, sig, args):
        base = builder.gep(_data(context, builder, sig.args[0], args[0]), [args[1]])
        bound = _splat(builder, args[3], _VF)
        less, at_most = _counter(builder), _counter(builder)

        def body(v, valid):
            lt = builder.fcmp_ordered("<", v, bound)
            le = builder.fcmp_ordered("<=", v, bound)
            if valid is not None:
                lt, le = builder.and_(lt, valid), builder.and_(le, valid)
            _count(builder, less, lt)
            _count(builder, at_most, le)

        _vector_loop(builder, base, args[2], body, args[4])
        return context.make_tuple(builder, sig.return_type, [_total(builder, less), _total(builder, at_most)])

    return signature, codegen


# ---------------------------------------------------------------------------------------
# Float keys: the int32 bits of a float32 remapped so that integer order is float order.


@intrinsic
def _bits_to_float(typingctx, bits):  # pragma: no cover - compiled
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], _F32)

    return types.float32(types.int32), codegen


@intrinsic
def _float_to_bits(typingctx, x):  # pragma: no cover - compiled
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], _I32)

    return types.int32(types.float32), codegen


@njit(nogil=True, cache=True, inline="always")
def _float_of(key):  # pragma: no cover - compiled
    k = np.int32(key)
    return _bits_to_float(np.int32(k ^ ((k >> np.int32(31)) & np.int32(0x7FFFFFFF))))


@njit(nogil=True, cache=True, inline="always")
def _key_of(x):  # pragma: no cover - compiled
    b = _float_to_bits(np.float32(x))
    return np.int64(b ^ ((b >> np.int32(31)) & np.int32(0x7FFFFFFF)))


#: Keys of +0.0, of the largest negative float (-1.4e-45), and one below -inf's.
_KEY_ZERO = 0
_KEY_LARGEST_NEGATIVE = -2
_KEY_BELOW_ALL = -2139095042
#: One octave of positive floats in keys (the 23 mantissa bits).
_OCTAVE = 1 << 23
#: An interval of at most FEW values is gathered and sorted; at most GATHER values, the
#: search goes on over a gathered copy rather than the row.
_FEW = 24
_GATHER = 192


# ---------------------------------------------------------------------------------------
# The kernels.


@njit(nogil=True, cache=True)
def _at_ranks(few, d, t1, t2):  # pragma: no cover - compiled
    """The values of ranks ``t1 <= t2`` among ``few[:d]``, found by counting each value's
    ranks (``d`` is small: ``d`` vector passes of ``d`` values, and no branch to mispredict
    per comparison, unlike a sort)."""
    v1 = few[0]
    v2 = few[0]
    found = 0
    for i in range(d):
        x = few[i]
        less, at_most = _ranks_of(few, 0, d, x, True)  # x holds ranks less .. at_most - 1
        if less <= t1 < at_most:
            v1 = x
            found |= 1
        if less <= t2 < at_most:
            v2 = x
            found |= 2
        if found == 3:
            break
    return v1, v2


@njit(nogil=True, cache=True)
def _neighbours(flat, start, n, p):  # pragma: no cover - compiled
    """``(max(x <= p), min(x > p))`` of ``flat[start:start+n]`` (a rare case: scalar)."""
    below = np.float32(-np.inf)
    above = np.float32(np.inf)
    for i in range(start, start + n):
        x = flat[i]
        if x <= p:
            below = max(below, x)
        else:
            above = min(above, x)
    return below, above


@njit(nogil=True, cache=True)
def _middle_pair(flat, start, n, k1, k2, a, ca, b, cb, guess, gathered, few):  # pragma: no cover - compiled
    """The values of ranks ``k1 <= k2`` (``k2 - k1 <= 1``) of ``flat[start:start+n]`` (no NaN),
    given two keys with ``ca = #(x <= a) <= k1`` and ``cb = #(x <= b) > k2``.

    Each probe counts ``#(x <= p)`` in one vector pass and moves ``a`` or ``b`` to ``p``:
    first ``guess`` (the row's mean), then octave steps towards the ranks, then bisection of
    the keys, until ``(a, b]`` holds at most ``_FEW`` values, which are gathered and ranked by counting.
    Once it holds at most ``_GATHER`` values they are gathered first, and the probes count
    in the copy. A probe that falls between the two ranks ends the search (the ranks are
    then the largest value at or below it and the smallest above)."""
    src = flat
    s0 = start
    m = n
    in_copy = False  # src is the gathered copy (padded)
    base = 0  # counts in src are counts in the row minus base
    phase = 0 if a < guess < b else 1  # 0: the guess, 1: octave steps, 2: bisection
    up = True
    while cb - ca > _FEW and b - a > 1:
        if not in_copy and cb - ca <= _GATHER:
            _, _, m = _count_and_gather(flat, start, n, _float_of(a), _float_of(b), gathered, False)
            src = gathered
            s0 = 0
            base = ca
            in_copy = True
        if phase == 0:
            p = guess
        elif phase == 1 and b - a > 2 * _OCTAVE:
            p = a + _OCTAVE if up else b - _OCTAVE
        else:
            phase = 2
            p = a + (b - a) // 2
        c = base + _count_at_most(src, s0, m, _float_of(p), in_copy)
        if c <= k1:
            moved_up = True
            a, ca = p, c
        elif c > k2:
            moved_up = False
            b, cb = p, c
        else:  # k1 < c <= k2: rank k1 is at or below p, rank k2 above
            return _neighbours(src, s0, m, _float_of(p))
        if phase == 0:
            phase, up = 1, moved_up
        elif phase == 1 and moved_up != up:
            phase = 2
    if b - a <= 1:  # every value in (a, b] is b's
        v = _float_of(b)
        return v, v
    d = _count_and_gather(src, s0, m, _float_of(a), _float_of(b), few, in_copy)[2]
    return _at_ranks(few, d, k1 - ca, k2 - ca)


@njit(nogil=True, cache=True)
def _largest_negative(flat, start, n):  # pragma: no cover - compiled
    """The largest negative value of ``flat[start:start+n]`` (a rare case: scalar)."""
    v = np.float32(-np.inf)
    for i in range(start, start + n):
        x = flat[i]
        if x < 0:
            v = max(v, x)
    return v


@njit(nogil=True, cache=True)
def _reduce_block(rows, want_median, median, maxima, means):  # pragma: no cover - compiled
    n_rows, n = rows.shape
    flat = rows.ravel()
    k1 = (n - 1) // 2
    k2 = n // 2
    gathered = np.empty(n + _LANES, np.float32)  # padded: see _vector_loop
    few = np.empty(n + _LANES, np.float32)
    for r in range(n_rows):
        start = r * n
        negative, nonpositive, nan, top, total = _row_summary(flat, start, n)
        if nan:
            median[r] = np.nan
            maxima[r] = np.nan
            means[r] = np.nan
            continue
        maxima[r] = top
        mean = np.float32(total / n)
        means[r] = mean
        if not want_median:
            continue
        guess = _key_of(mean)
        if nonpositive <= k1:  # both middle ranks are positive
            v1, v2 = _middle_pair(flat, start, n, k1, k2, _KEY_ZERO, nonpositive, _key_of(top), n, guess, gathered, few)
        elif negative <= k1:  # rank k1 holds a zero
            v1 = np.float32(0.0)
            if k2 < nonpositive:
                v2 = v1
            else:  # rank k2 is the smallest positive value
                v2 = _neighbours(flat, start, n, np.float32(0.0))[1]
        elif negative > k2:  # both middle ranks are negative
            v1, v2 = _middle_pair(
                flat, start, n, k1, k2, _KEY_BELOW_ALL, 0, _KEY_LARGEST_NEGATIVE, negative, guess, gathered, few
            )
        else:  # rank k1 is the largest negative value, rank k2 a zero or the smallest positive
            v1 = _largest_negative(flat, start, n)
            v2 = np.float32(0.0) if k2 < nonpositive else _neighbours(flat, start, n, np.float32(0.0))[1]
        median[r] = (v1 + v2) * np.float32(0.5)


# ---------------------------------------------------------------------------------------
# A C entry point, to run the kernel in torch's OpenMP team (:mod:`fovea_ray.taps.openmp`).


@intrinsic
def _int64_pointer(typingctx, address):  # pragma: no cover - compiled
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], _I64.as_pointer())

    return types.CPointer(types.int64)(types.voidptr), codegen


@intrinsic
def _float32_pointer(typingctx, address):  # pragma: no cover - compiled
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], _F32.as_pointer())

    return types.CPointer(types.float32)(types.int64), codegen


@intrinsic
def _fetch_add(typingctx, pointer, value):  # pragma: no cover - compiled
    def codegen(context, builder, sig, args):
        return builder.atomic_rmw("add", args[0], args[1], "monotonic")

    return types.int64(types.CPointer(types.int64), types.int64), codegen


#: The int64 fields of the task that :func:`_team_task` reads.
_NEXT, _ROWS, _LENGTH, _DATA, _MEDIAN, _MAXIMA, _MEANS, _WANT_MEDIAN, _CHUNK, _FIELDS = range(10)


@cfunc(types.void(types.voidptr), nopython=True, nogil=True, cache=True)
def _team_task(task):  # pragma: no cover - compiled
    """Each thread of the team takes chunks of rows (an atomic counter) until none is left."""
    fields = carray(_int64_pointer(task), (_FIELDS,))
    n_rows = fields[_ROWS]
    n = fields[_LENGTH]
    chunk = fields[_CHUNK]
    want_median = fields[_WANT_MEDIAN] != 0
    rows = carray(_float32_pointer(fields[_DATA]), (n_rows, n))
    median = carray(_float32_pointer(fields[_MEDIAN]), (n_rows,))
    maxima = carray(_float32_pointer(fields[_MAXIMA]), (n_rows,))
    means = carray(_float32_pointer(fields[_MEANS]), (n_rows,))
    counter = _int64_pointer(task)  # the first field, _NEXT
    while True:
        first = _fetch_add(counter, chunk)
        if first >= n_rows:
            break
        last = min(first + chunk, n_rows)
        _reduce_block(rows[first:last], want_median, median[first:last], maxima[first:last], means[first:last])


def summarise_rows(
    rows: np.ndarray, *, median: bool = True, threads: int = 1
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``(median, max, mean)`` of each row of a C-contiguous float32 ``(R, n)`` array, ``n >= 1``.

    The median is exact (numpy's definition: the mean of the two middle values), the max
    exact, the mean the float64 sum over ``n`` rounded to float32; each is NaN for a row
    holding NaN (as ``np.median``, ``torch.amax`` and ``torch.mean``). ``median=False`` skips
    the selection (and returns None for it). ``threads > 1`` runs the rows in chunks on
    that many threads of torch's OpenMP team (:mod:`fovea_ray.taps.openmp`), or of a
    thread pool where torch's OpenMP is not libgomp."""
    if rows.dtype != np.float32 or rows.ndim != 2 or not rows.flags.c_contiguous or rows.shape[1] == 0:
        raise ValueError(
            f"summarise_rows needs a C-contiguous float32 (R, n >= 1) array, got {rows.dtype} {rows.shape}"
        )
    n_rows = rows.shape[0]
    out = np.empty(n_rows, dtype=np.float32)
    maxima = np.empty(n_rows, dtype=np.float32)
    means = np.empty(n_rows, dtype=np.float32)
    if threads <= 1 or n_rows < 2 * _MIN_CHUNK:
        _reduce_block(rows, median, out, maxima, means)
    else:
        _run_threaded(rows, median, out, maxima, means, threads)
    return (out if median else None), maxima, means


#: Rows per chunk that a thread takes at least (a chunk allocates two row buffers).
_MIN_CHUNK = 16


def _run_threaded(rows, want_median, median, maxima, means, threads: int) -> None:
    from fovea_ray.taps.openmp import team

    n_rows, n = rows.shape
    chunk = max(_MIN_CHUNK, n_rows // (8 * threads))
    omp = team()
    if omp is not None:
        task = np.zeros(_FIELDS, dtype=np.int64)
        task[[_ROWS, _LENGTH, _CHUNK, _WANT_MEDIAN]] = n_rows, n, chunk, int(want_median)
        task[[_DATA, _MEDIAN, _MAXIMA, _MEANS]] = [a.ctypes.data for a in (rows, median, maxima, means)]
        omp.run(_team_task.address, task.ctypes.data, threads)
        return
    from fovea_ray.taps.reductions import _pool  # the package's one thread pool

    bounds = np.linspace(0, n_rows, threads + 1).astype(int)

    def part(i: int) -> None:
        a, b = bounds[i], bounds[i + 1]
        _reduce_block(rows[a:b], want_median, median[a:b], maxima[a:b], means[a:b])

    list(_pool(threads).map(part, range(threads)))
