"""fovea_ray.controls: pixel statistics against numpy/scipy, and blur sensitivity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage, signal

from fovea_ray.controls import control_stat_names, pixel_controls


def test_names():
    assert control_stat_names(("mean", "median", "max")) == ["mean", "median", "max", "hf_energy"]
    assert control_stat_names(["hf_energy", "std", "topk_mean"]) == ["hf_energy", "std", "topk_mean@0.1"]
    assert control_stat_names("hf_energy") == ["hf_energy"]
    with pytest.raises(ValueError, match="unknown statistic"):
        control_stat_names(["mean", "sharpness"])


def test_matches_numpy_and_scipy():
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 33, 40)).astype(np.float32)
    stats = ["mean", "median", "max", "min", "std", "frac_pos"]
    ours = pixel_controls(torch.from_numpy(images), stats).numpy()
    assert ours.shape == (2, 3, 7)
    kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    for b in range(2):
        for c in range(3):
            x = images[b, c].astype(np.float64)
            expected = [x.mean(), np.median(x), x.max(), x.min(), x.std(), (x > 0).mean()]
            lap = signal.convolve2d(x, kernel, mode="valid")
            expected.append(np.mean(lap**2))
            np.testing.assert_allclose(ours[b, c], expected, rtol=1e-5, atol=1e-7)


def test_hf_energy_falls_with_blur_and_uint8_is_scaled():
    rng = np.random.default_rng(1)
    sharp = rng.random((3, 64, 64)).astype(np.float32)
    blurred = np.stack([ndimage.gaussian_filter(ch, sigma=2.0) for ch in sharp])
    batch = torch.from_numpy(np.stack([sharp, blurred]))
    hf = pixel_controls(batch, ["hf_energy"])[..., 0]
    assert torch.all(hf[1] < 0.1 * hf[0])
    as_uint8 = (batch * 255).round().to(torch.uint8)
    torch.testing.assert_close(pixel_controls(as_uint8, ["mean"]), pixel_controls(as_uint8.float() / 255, ["mean"]))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        pixel_controls(torch.rand(3, 8, 8), ["mean"])
