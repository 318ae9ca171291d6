"""fovea_ray.taps.reductions against numpy, and the statistic-name parser."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from fovea_ray.taps.reductions import parse_stats, reduce_rows, valid_extent

ALL = ("mean", "median", "max", "min", "std", "frac_pos", "topk_mean@5", "topk_mean@0.25")


def numpy_reference(rows: np.ndarray, name: str) -> np.ndarray:
    rows = rows.astype(np.float64)
    n = rows.shape[1]
    if name == "mean":
        return rows.mean(1)
    if name == "median":
        return np.median(rows, axis=1)
    if name == "max":
        return rows.max(1)
    if name == "min":
        return rows.min(1)
    if name == "std":
        return rows.std(1)
    if name == "frac_pos":
        return (rows > 0).mean(1)
    k = int(name.split("@")[1]) if "." not in name else max(1, round(float(name.split("@")[1]) * n))
    return -np.sort(-rows, axis=1)[:, :k].mean(1)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 225])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_reductions_match_numpy(n, backend):
    rng = np.random.default_rng(n)
    rows = rng.normal(size=(6, n)).astype(np.float32)
    rows[0] = np.round(rows[0])  # ties, as after a ReLU or rounding
    rows[1] = np.maximum(rows[1], 0)
    specs = parse_stats(ALL)
    ours = reduce_rows(torch.from_numpy(rows), specs, median_backend=backend).numpy()
    assert ours.shape == (6, len(ALL)) and ours.dtype == np.float32
    for j, spec in enumerate(specs):
        np.testing.assert_allclose(
            ours[:, j], numpy_reference(rows, spec.name), rtol=1e-5, atol=1e-6, err_msg=spec.name
        )


def test_median_is_numpy_median_not_lower_median():
    rows = torch.tensor([[1.0, 2.0, 3.0, 10.0]])
    specs = parse_stats(["median"])
    assert reduce_rows(rows, specs, median_backend="numpy").item() == 2.5
    assert reduce_rows(rows, specs, median_backend="torch").item() == 2.5
    assert torch.median(rows).item() == 2.0  # what we deliberately do not return


def test_numpy_and_torch_sorts_agree_bitwise_on_large_tied_maps():
    # 300 x 1000 values: large enough for the threaded numpy sort; half tied at zero (ReLU).
    rows = torch.randn(300, 1000, generator=torch.Generator().manual_seed(0)).relu()
    specs = parse_stats(["median", "max", "min", "topk_mean@0.05"])
    ours = reduce_rows(rows, specs, median_backend="numpy")
    assert torch.equal(ours, reduce_rows(rows, specs, median_backend="torch"))
    np.testing.assert_allclose(ours[:, 0].numpy(), np.median(rows.numpy(), axis=1), rtol=1e-6)


def test_half_precision_maps_are_reduced_in_float32():
    rows = torch.randn(3, 50).half()
    out = reduce_rows(rows, parse_stats(["mean", "max"]))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[:, 1], rows.float().amax(1))


def test_parse_stats_names_and_errors():
    assert [s.name for s in parse_stats("mean, median,max")] == ["mean", "median", "max"]
    assert [s.name for s in parse_stats(["topk_mean", "topk_mean@10", "topk_mean@0.05"])] == [
        "topk_mean@0.1",
        "topk_mean@10",
        "topk_mean@0.05",
    ]
    assert parse_stats(["topk_mean@0.5"])[0].topk_count(9) == 4  # round-half-even of 4.5, at least 1
    assert parse_stats(["topk_mean@100"])[0].topk_count(9) == 9
    with pytest.raises(ValueError, match="unknown statistic 'average'"):
        parse_stats(["mean", "average"])
    with pytest.raises(ValueError, match="listed twice"):
        parse_stats(["max", "max"])
    with pytest.raises(ValueError, match="top-k size"):
        parse_stats(["topk_mean@2.5"])
    with pytest.raises(ValueError, match="no statistics"):
        parse_stats([])


def test_valid_extent_follows_the_stride():
    # 150 px of a 160 px padded input: stride 4 -> positions 0,4,...,148 are inside (38).
    assert valid_extent(150, 40, 160) == 38
    assert valid_extent(160, 40, 160) == 40
    assert valid_extent(150, 160, 160) == 150  # stride 1
    assert valid_extent(1, 5, 160) == 1


def _sorted_median(rows: np.ndarray) -> np.ndarray:
    ordered = np.sort(rows, axis=1)
    n = rows.shape[1]
    return (ordered[:, (n - 1) // 2] + ordered[:, n // 2]) * np.float32(0.5)


def _hard_rows(n: int, seed: int) -> np.ndarray:
    """Rows that stress the bracketed median: ties, a majority of zeros, negatives,
    non-finite values, and lattice-aligned outliers that make the sample lie."""
    rng = np.random.default_rng(seed)
    rows = rng.gamma(1.5, 1.0, size=(16, n)).astype(np.float32) - 1.0
    rows[0] = np.maximum(rows[0], 0)  # post-ReLU, ~40 % zeros
    rows[1] = np.maximum(rows[1] - 1.0, 0)  # mostly zeros: the median is 0
    rows[2] = np.round(rows[2] * 2)  # heavy ties at a few values
    rows[3] = -np.abs(rows[3])  # all negative
    rows[4, ::3] = -0.0  # signed zeros
    rows[5, 7] = np.nan  # non-finite: sorted whole
    rows[6, 3] = np.inf
    for r, step in ((7, 7), (8, 11), (9, 13)):  # the sample sees only outliers
        rows[r, ::step] = 1e6
    rows[10] = 3.0  # constant
    rows[11] = np.sort(rows[11])  # sorted, and reversed
    rows[12] = rows[11][::-1]
    return rows


@pytest.mark.parametrize("method", ["compiled", "numpy"])
@pytest.mark.parametrize("n", [512, 513, 1024, 4097, 16384])
def test_bracketed_median_equals_the_sorted_median_exactly(n, method):
    from fovea_ray.taps.reductions import BRACKET_MIN_LENGTH, median_rows

    assert n >= BRACKET_MIN_LENGTH  # these rows take the numpy path's bracket
    rows = _hard_rows(n, n)
    for width in (None, 32, 28, 77):  # 28 and 77: widths that are multiples of the first sample steps
        ours = median_rows(torch.from_numpy(rows), width=width, method=method).numpy()
        np.testing.assert_array_equal(ours, np.median(rows, axis=1))  # NaN where numpy's is NaN
        finite = np.isfinite(rows).all(axis=1)
        np.testing.assert_array_equal(ours[finite], _sorted_median(rows[finite]))
    assert np.isnan(ours[5]) and ours[1] == 0.0 and ours[10] == 3.0 and np.isfinite(ours[6])
    torch_path = reduce_rows(torch.from_numpy(rows), parse_stats(["median"]), median_backend="torch")[:, 0].numpy()
    np.testing.assert_array_equal(torch_path, ours)


def test_bracketed_median_on_post_relu_maps_through_reduce_rows():
    # 2 images x 256 channels of 64 x 64 post-ReLU maps with spatial structure, as a
    # bottleneck output: large enough for the threaded path; all statistics agree with the sort.
    g = torch.Generator().manual_seed(1)
    maps = torch.nn.functional.avg_pool2d(torch.randn(2, 256, 72, 72, generator=g), 9, stride=1).relu()
    rows = maps.reshape(512, 64 * 64)
    specs = parse_stats(["mean", "median", "max"])
    ours = reduce_rows(rows, specs, width=64)
    sorted_path = reduce_rows(rows, specs, median_backend="torch")
    assert torch.equal(ours[:, 1:], sorted_path[:, 1:])  # the order statistics, bit for bit
    np.testing.assert_array_equal(ours[:, 1].numpy(), np.median(rows.numpy(), axis=1))
    _assert_mean(ours[:, 0].numpy(), rows.numpy())


def _assert_mean(ours: np.ndarray, rows: np.ndarray) -> None:
    """The mean within one float32 rounding of the float64 mean (the compiled pass sums in
    float64 and rounds once; torch's float32 mean is within a few roundings)."""
    assert ours.dtype == np.float32
    reference = rows.astype(np.float64).mean(axis=1)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(ours, reference, rtol=2**-23, atol=0, equal_nan=True)


def _adversarial_rows(n: int, seed: int) -> np.ndarray:
    """Rows for the compiled median's shortcuts: all zero, more than / exactly / less
    than half zero, NaN, +-inf, negatives, signed zeros, ties, a sample that lies."""
    rng = np.random.default_rng(seed)
    half = n // 2
    positive = rng.gamma(2.0, 1.0, size=n).astype(np.float32) + np.float32(0.01)
    rows = [
        np.zeros(n),  # all zero
        np.where(np.arange(n) < half + 1, 0.0, positive),  # more than half zero: median 0
        np.where(np.arange(n) < half, 0.0, positive),  # exactly half zero: (0 + smallest positive) / 2 when n is even
        np.where(np.arange(n) < max(half - 1, 0), 0.0, positive),  # just under half zero
        rng.permutation(np.where(np.arange(n) < half, 0.0, positive)),  # the same, shuffled
        np.where(np.arange(n) < half, -0.0, positive),  # signed zeros
        np.maximum(rng.normal(size=n), 0),  # post-ReLU, about half zero
        np.maximum(rng.normal(0.5, 1.0, size=n), 0),  # post-ReLU, about 30 % zero
        np.where(rng.random(n) < 0.3, -1.0, np.maximum(rng.normal(size=n), 0)),  # zeros and negatives
        -positive,  # all negative
        rng.normal(size=n),  # both signs, no ties
        np.round(rng.normal(size=n) * 2),  # heavy ties
        np.full(n, 7.5),  # constant
        np.where(np.arange(n) == 0, np.nan, positive),  # NaN: the median is NaN
        np.where(np.arange(n) == n - 1, np.nan, np.zeros(n)),  # NaN among zeros
        np.where(np.arange(n) % 5 == 0, np.inf, positive),  # +inf
        np.where(np.arange(n) % 3 == 0, -np.inf, positive),  # -inf
        np.where(np.arange(n) % 2 == 0, np.inf, -np.inf),  # only infinities
        np.where(np.arange(n) % 7 == 0, 1e6, np.maximum(rng.normal(size=n), 0)),  # the sample sees only outliers
        np.sort(positive),  # sorted, and reversed
        np.sort(positive)[::-1],
        _below_the_median_on_the_lattice(n),
    ]
    return np.stack(rows).astype(np.float32)


def _below_the_median_on_the_lattice(n: int) -> np.ndarray:
    """Ranks 0 .. n//2 - 1 hold 1.0 and include every position of the samples of steps 7, 11 and 13,
    the rest 2.0: the sample holds only 1.0, so its bracket ends exactly one rank short of
    the upper middle rank (the bracket must miss, not read past its end)."""
    row = np.full(n, 2.0)
    lattice = np.unique(np.concatenate([np.arange(0, n, p) for p in (7, 11, 13)]))
    rest = np.setdiff1d(np.arange(n), lattice)
    ones = np.concatenate([lattice, rest])[: n // 2]
    row[ones] = 1.0
    return row


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 48, 49, 196, 511, 512, 513, 784, 3136, 3137])
def test_compiled_median_equals_numpy_median_on_adversarial_rows(n):
    from fovea_ray.taps.reductions import median_rows

    rows = _adversarial_rows(n, n)
    expected = np.median(rows, axis=1)
    for method in ("compiled", "numpy", "auto"):
        for width in (None, 7, 56):  # 7: a multiple of the first sample step
            ours = median_rows(torch.from_numpy(rows), width=width, method=method).numpy()
            assert ours.dtype == np.float32
            np.testing.assert_array_equal(ours, expected, err_msg=f"{method}, width {width}")  # NaN where numpy's is
    if n >= 2 and n % 2 == 0:
        assert ours[2] == rows[2][rows[2] > 0].min() / 2  # exactly half zero: the mean of 0 and the smallest positive
    assert ours[1] == 0 and ours[0] == 0 and np.isnan(ours[13]) and np.isnan(ours[14])


def test_compiled_median_on_many_post_relu_rows_through_the_threads():
    # 4096 rows x 784 (a layer2 map of ResNet-50 at 224 px, batch 8) split across threads,
    # mixing rows of every kind above with random post-ReLU rows.
    from fovea_ray.taps.reductions import median_rows

    rng = np.random.default_rng(3)
    rows = np.maximum(rng.normal(rng.uniform(-0.5, 0.5, (4096, 1)), 1.0, (4096, 784)), 0).astype(np.float32)
    rows[::97] = np.resize(_adversarial_rows(784, 5), rows[::97].shape)
    torch.set_num_threads(2)
    ours = median_rows(torch.from_numpy(rows), width=28).numpy()
    np.testing.assert_array_equal(ours, np.median(rows, axis=1))


def test_median_method_is_checked():
    from fovea_ray.taps.reductions import median_rows

    with pytest.raises(ValueError, match="method must be"):
        median_rows(torch.zeros(2, 3), method="fast")


@pytest.mark.parametrize("n", [1, 49, 196, 3136])
def test_max_from_the_compiled_median_pass_equals_amax(n):
    # With median and max requested, the max comes from the compiled median's pass.
    rows = _adversarial_rows(n, n + 1)
    specs = parse_stats(["median", "max", "mean"])
    ours = reduce_rows(torch.from_numpy(rows), specs)
    torch.testing.assert_close(ours[:, 1], torch.from_numpy(rows).amax(1), rtol=0, atol=0, equal_nan=True)
    _assert_mean(ours[:, 2].numpy(), rows)
    sorted_path = reduce_rows(torch.from_numpy(rows), specs, median_backend="torch")
    torch.testing.assert_close(ours[:, :2], sorted_path[:, :2], rtol=0, atol=0, equal_nan=True)


def _random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """32 rows of one of eleven kinds: post-ReLU, ties, few distinct values, lattice outliers,
    a cluster at the median, wide dynamic range, +-inf and NaN, negative medians, negated
    ReLU, signed zeros, sorted."""
    shape = (32, n)
    kind = int(rng.integers(0, 11))
    if kind == 0:
        rows = np.maximum(rng.normal(rng.uniform(-1, 1), 1, shape), 0)
    elif kind == 1:
        rows = np.round(rng.normal(0, rng.uniform(0.5, 20), shape))
    elif kind == 2:
        rows = rng.integers(0, rng.integers(2, 50), shape).astype(float)
    elif kind == 3:
        rows = np.maximum(rng.normal(0.3, 1, shape), 0)
        rows[:, :: int(rng.choice([3, 5, 7, 11, 13]))] = rng.choice([0, 1e6, -1e6])
    elif kind == 4:
        rows = rng.normal(0, 1, shape)
        rows[:, rng.random(n) < 0.3] = 0.5
    elif kind == 5:
        rows = np.exp(rng.normal(0, 10, shape))
    elif kind == 6:
        rows = rng.normal(0, 1, shape)
        rows[rng.random(shape) < 0.01] = rng.choice([np.inf, -np.inf, np.nan])
    elif kind == 7:
        rows = rng.normal(-1, 1, shape)
        rows[rng.random(shape) < 0.2] = -np.inf
    elif kind == 8:
        rows = -np.maximum(rng.normal(rng.uniform(-1, 1), 1, shape), 0)
    elif kind == 9:
        rows = np.where(rng.random(shape) < rng.uniform(0, 1), rng.choice([-0.0, 0.0]), rng.normal(0, 1, shape))
    else:
        rows = np.sort(rng.normal(0, 1, shape), axis=1)[:, :: int(rng.choice([1, -1]))]
    return np.ascontiguousarray(rows, dtype=np.float32)


def test_compiled_summary_equals_numpy_on_random_rows():
    # 600 seeded cases of 32 rows: every branch of the compiled selection (probes on the row,
    # on the gathered copy, a probe between the middle ranks, negative medians, the zero
    # shortcuts), one thread and torch's team of two.
    from fovea_ray.taps.median_numba import summarise_rows

    rng = np.random.default_rng(11)
    torch.set_num_threads(2)
    for case in range(600):
        n = int(rng.choice([1, 2, 3, 16, 17, 49, 196, 513, 784, 3136]))
        rows = _random_rows(rng, n)
        median, maxima, means = summarise_rows(rows, threads=1 + case % 2)
        np.testing.assert_array_equal(median, np.median(rows, axis=1), err_msg=f"case {case}, n {n}")
        finite_max = ~np.isnan(rows).any(axis=1)
        np.testing.assert_array_equal(maxima[finite_max], rows.max(axis=1)[finite_max])
        assert np.isnan(maxima[~finite_max]).all()
        _assert_mean(means, rows)


def test_compiled_summary_on_torchs_team_and_on_a_thread_pool_agree(monkeypatch):
    # 4096 rows (a layer2 map at batch 8): chunks on torch's OpenMP team, halves on a pool
    # (where torch's OpenMP is not libgomp), one thread: the same bits.
    import fovea_ray.taps.openmp as openmp
    from fovea_ray.taps.median_numba import summarise_rows

    rng = np.random.default_rng(5)
    rows = np.maximum(rng.normal(rng.uniform(-0.5, 0.5, (4096, 1)), 1.0, (4096, 784)), 0).astype(np.float32)
    one = summarise_rows(rows)
    on_team = summarise_rows(rows, threads=2)
    monkeypatch.setattr(openmp, "_TEAM", None)  # no team: the pool
    on_pool = summarise_rows(rows, threads=2)
    for a, b, c in zip(one, on_team, on_pool, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(one[0], np.median(rows, axis=1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torch's Linux wheels run on libgomp")
def test_the_openmp_team_is_torchs_libgomp():
    import os

    from fovea_ray.taps.openmp import team

    found = team()
    assert found is not None and "libgomp" in os.path.basename(found.path)
    assert found.path.startswith(os.path.dirname(torch.__file__))


def test_reduction_numerics_name_the_compiled_path():
    from fovea_ray.names import COMPILED_NUMERICS, reduction_numerics

    assert reduction_numerics("cpu") == COMPILED_NUMERICS  # numba is in the [test] extra
    assert reduction_numerics("cuda") == "torch"
