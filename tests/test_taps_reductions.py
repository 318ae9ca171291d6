"""fovea_ray.taps.reductions against numpy, and the statistic-name parser."""

from __future__ import annotations

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
        np.testing.assert_allclose(ours[:, j], numpy_reference(rows, spec.name), rtol=1e-5, atol=1e-6, err_msg=spec.name)


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
    assert [s.name for s in parse_stats(["topk_mean", "topk_mean@10", "topk_mean@0.05"])] == ["topk_mean@0.1", "topk_mean@10", "topk_mean@0.05"]
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
