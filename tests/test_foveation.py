"""Properties of the Geisler & Perry foveation filter (fovea_ray.foveation).

Checked against the model's own definitions and against independent numpy/scipy code:
the fovea is untouched, resolution falls monotonically with eccentricity, batches equal
single images, fixations are per image, translation is equivariant, uint8 and float
agree, the pyramid levels have the cutoffs the model says, and a direct full-resolution
numpy rendering of the per-pixel two-level blend agrees with the fast cascade.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d, uniform_filter

from fovea_ray.foveation import Foveator, cutoff_cpd, half_amplitude_frequencies
from fovea_ray.foveation.model import blend_fraction, level_transfer
from fovea_ray.foveation.pyramid import build_pyramid, down2, up2

# A steep model (small e2, large alpha) so that small test images span several levels.
STEEP = dict(pixels_per_degree=30.0, e2=0.3, alpha=0.5)


def _noise(b: int, h: int, w: int, seed: int = 0, c: int = 3) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _high_pass_energy(x: np.ndarray) -> np.ndarray:
    """Squared difference from the 3x3 local mean, per pixel, summed over channels."""
    hp = x - uniform_filter(x, size=(1, 3, 3), mode="nearest")
    return (hp**2).sum(axis=0)


# ----------------------------------------------------------------------------- model


def test_cutoff_map_is_geisler_perry_formula():
    fov = Foveator()
    fix = [[40.3, 25.0], [-100.0, 300.0]]
    got = fov.cutoff_map(48, 64, fix).numpy()
    yy, xx = np.mgrid[0:48, 0:64]
    for b, (fx, fy) in enumerate(fix):
        ecc = np.hypot(xx - fx, yy - fy) / 30.0
        want = 2.3 * math.log(64) / (0.106 * (ecc + 2.3))
        np.testing.assert_allclose(got[b], want, rtol=1e-5)
    # At the fovea centre the cutoff is ln(1/ct0)/alpha ~ 39.2 c/deg, above Nyquist (15).
    assert cutoff_cpd(0.0) == pytest.approx(math.log(64) / 0.106)


def test_level_cutoffs_are_measured_half_amplitude_frequencies():
    """Each pyramid level, upsampled back, passes a sinusoid at its documented cutoff
    at half amplitude, and other frequencies as level_transfer predicts."""
    hs = half_amplitude_frequencies(4)
    assert hs[0] == 0.5 and all(a > b for a, b in zip(hs, hs[1:]))
    n = 512
    xs = np.arange(n)
    for k in (1, 2, 3):
        for f in (hs[k], 0.5 * hs[k], 1.5 * hs[k]):
            row = np.cos(2 * np.pi * f * xs + 0.3)
            img = torch.tensor(np.tile(row, (2 ** (k + 1), 1)))[None, None]
            pyr = build_pyramid(img, k + 1)
            u = pyr[k]
            for j in range(k - 1, -1, -1):
                u = up2(u, pyr[j].shape[-2:])
            out = u[0, 0, 0].numpy()[64:-64]
            basis = np.stack([np.cos(2 * np.pi * f * xs + 0.3), np.sin(2 * np.pi * f * xs + 0.3)], 1)[64:-64]
            coef, *_ = np.linalg.lstsq(basis, out, rcond=None)
            assert np.hypot(*coef) == pytest.approx(float(level_transfer(f, k)), abs=0.01)
        assert float(level_transfer(hs[k], k)) == pytest.approx(0.5, abs=1e-9)


def test_down2_matches_scipy_binomial_filter_and_decimation():
    k = np.array([1, 3, 3, 1]) / 8
    for h, w in [(8, 8), (7, 9), (1, 1), (2, 3), (5, 1), (33, 20)]:
        x = torch.rand(2, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(h * w))
        pad = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1 + h % 2), (1, 1 + w % 2)), mode="edge")
        ref = correlate1d(correlate1d(pad, k, axis=2, mode="nearest"), k, axis=3, mode="nearest")
        ref = ref[:, :, 2::2, 2::2][:, :, : (h + 1) // 2, : (w + 1) // 2]
        np.testing.assert_allclose(down2(x).numpy(), ref, atol=1e-12)


def _ref_upsample_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    src = np.clip((np.arange(n_out) + 0.5) / 2 - 0.5, 0, None)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, a.shape[axis] - 1)
    shape = [1] * a.ndim
    shape[axis] = n_out
    fr = (src - i0).reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - fr) + np.take(a, i1, axis=axis) * fr


def _reference_foveate(img: np.ndarray, fix, levels: int, *, ppd, e2, ct0=1 / 64, alpha) -> np.ndarray:
    """Direct full-resolution rendering: every level upsampled to full size, and each pixel
    the two-level blend (Perry & Geisler 2002) at its own exact weight. numpy/scipy only."""
    c, h, w = img.shape
    kern = np.array([1, 3, 3, 1]) / 8
    levels_img = [img]
    for _ in range(levels - 1):
        g = levels_img[-1]
        gh, gw = g.shape[1:]
        pad = np.pad(g, ((0, 0), (1, 1 + gh % 2), (1, 1 + gw % 2)), mode="edge")
        r = correlate1d(correlate1d(pad, kern, axis=1, mode="nearest"), kern, axis=2, mode="nearest")
        levels_img.append(r[:, 2::2, 2::2][:, : (gh + 1) // 2, : (gw + 1) // 2])
    full = []
    for k, g in enumerate(levels_img):
        for j in range(k - 1, -1, -1):
            hj, wj = levels_img[j].shape[1:]
            g = _ref_upsample_axis(_ref_upsample_axis(g, wj, 2), hj, 1)
        full.append(g)
    yy, xx = np.mgrid[0:h, 0:w]
    ecc = np.hypot(xx - fix[0], yy - fix[1]) / ppd
    f = e2 * math.log(1 / ct0) / (alpha * (ecc + e2)) / ppd  # cycles/pixel
    hs = half_amplitude_frequencies(levels)
    out = np.where(f >= hs[0], img, full[-1])
    for k in range(levels - 1):
        band = (f < hs[k]) & (f >= hs[k + 1])
        rk, rn = np.exp2(-((f / hs[k]) ** 2)), np.exp2(-((f / hs[k + 1]) ** 2))
        t = np.clip((rk - 0.5) / (rk - rn), 0, 1)
        out = np.where(band, (1 - t) * full[k] + t * full[k + 1], out)
    return out


@pytest.mark.parametrize("pattern", ["noise", "edges"])
def test_matches_independent_full_resolution_rendering(pattern):
    h, w = 96, 136
    rng = np.random.default_rng(1)
    img = rng.random((3, h, w))
    if pattern == "edges":
        img = np.zeros((3, h, w))
        img[:, ::6, :] = 1.0
        img[0, :, 50:90] = 0.7
    fix = (40.3, 30.6)
    fov = Foveator(**STEEP)
    levels = fov.num_levels(h, w, [fix])
    assert levels >= 4  # the cascade really runs over several levels
    ref = _reference_foveate(img, fix, levels, ppd=30.0, e2=0.3, alpha=0.5)
    got = fov(torch.from_numpy(img)[None].float(), [fix])[0].double().numpy()
    err = np.abs(got - ref)
    # The cascade interpolates blend weights over coarse grids. With this steep model
    # (six levels within 130 px) that costs up to ~2.5 grey levels next to full-contrast
    # edges; with the default model at 30 px/deg, < 0.1 on noise (see blend.py).
    assert err.max() < 3.0 / 255 and err.mean() < 0.25 / 255


def test_level_map_matches_exact_blend_weights():
    fov = Foveator(pixels_per_degree=8.0, e2=1.0, alpha=0.8)  # a 2.4 px fovea
    fix = [[20.0, 30.0]]
    lam = fov.level_map(64, 112, fix)[0].numpy()
    levels = fov.num_levels(64, 112, fix)
    yy, xx = np.mgrid[0:64, 0:112]
    f = fov.model.cutoff_cpp(np.hypot(xx - 20.0, yy - 30.0))
    want = sum(blend_fraction(f, j) for j in range(levels - 1))
    np.testing.assert_allclose(lam, want, atol=2e-4)
    assert lam.min() == 0.0 and lam.max() > 2.0


# ----------------------------------------------------------------------- properties


def test_fovea_is_untouched_bit_for_bit():
    fov = Foveator(pixels_per_degree=60.0)  # fovea radius ~42 px
    x = _noise(2, 96, 128, seed=3)
    fix = [[50.0, 40.0], [128.7, -10.0]]
    out = fov(x, fix)
    cutoff = fov.cutoff_map(96, 128, fix)
    inside = (cutoff >= fov.nyquist_cpd * (1 + 1e-5)).unsqueeze(1).expand_as(x)
    assert inside[0].sum() > 1000 and inside[1].sum() > 100
    assert torch.equal(out[inside], x[inside])
    assert (out[~inside] != x[~inside]).float().mean() > 0.9
    # A fovea larger than the image leaves it unchanged.
    big = Foveator(pixels_per_degree=5.0)
    assert torch.equal(big(x, [[64.0, 48.0]] * 2), x)


def test_high_frequency_energy_falls_monotonically_with_eccentricity():
    fov = Foveator(pixels_per_degree=60.0)
    h = w = 256
    x = _noise(4, h, w, seed=5)
    fix = [[128.0, 128.0]] * 4
    out = fov(x, fix).numpy()
    energy_in = np.mean([_high_pass_energy(im) for im in x.numpy()], axis=0)
    energy = np.mean([_high_pass_energy(im) for im in out], axis=0)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - 128.0, yy - 128.0)
    edges = np.arange(0, 129, 16)
    rings = [
        energy[(r >= a) & (r < b) & (yy > 2) & (yy < h - 3) & (xx > 2) & (xx < w - 3)].mean()
        for a, b in zip(edges, edges[1:])
    ]
    rings_in = [energy_in[(r >= a) & (r < b)].mean() for a, b in zip(edges, edges[1:])]
    fovea = fov.fovea_radius_px
    for i, (_a, b) in enumerate(zip(edges, edges[1:])):
        if b <= fovea:
            assert rings[i] == pytest.approx(rings_in[i], rel=1e-6)
    beyond = [e for e, a in zip(rings, edges) if a >= fovea]
    assert len(beyond) >= 4
    assert all(b1 < b0 for b0, b1 in zip(beyond, beyond[1:])), rings
    assert all(b1 <= b0 * 1.01 for b0, b1 in zip(rings, rings[1:])), rings
    assert rings[-1] < 0.6 * rings[0]


def test_batch_equals_per_image_even_with_different_level_counts():
    fov = Foveator(**STEEP)
    x = _noise(3, 40, 56, seed=7)
    fix = [[10.0, 12.0], [50.5, 3.25], [-400.0, 900.0]]  # the last needs more levels
    per_image_levels = [fov.num_levels(40, 56, [f]) for f in fix]
    assert len(set(per_image_levels)) > 1
    batch = fov(x, torch.tensor(fix))
    for i, f in enumerate(fix):
        single = fov(x[i : i + 1], [f])
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-6, rtol=0)


def test_each_image_is_sharp_at_its_own_fixation():
    fov = Foveator(pixels_per_degree=60.0)
    img = _noise(1, 128, 128, seed=11)
    x = img.repeat(2, 1, 1, 1)
    fix = [[24.0, 24.0], [104.0, 104.0]]
    out = fov(x, fix)
    a = (slice(None), slice(14, 34), slice(14, 34))  # around fixation 0
    b = (slice(None), slice(94, 114), slice(94, 114))  # around fixation 1
    assert torch.equal(out[0][a], img[0][a]) and torch.equal(out[1][b], img[0][b])
    e = lambda t: float(_high_pass_energy(t.numpy()).mean())  # noqa: E731
    assert e(out[0][b]) < 0.8 * e(img[0][b]) and e(out[1][a]) < 0.8 * e(img[0][a])


def test_translating_image_and_fixation_translates_output():
    levels = 3
    fov = Foveator(**STEEP, levels=levels)
    canvas = _noise(1, 112, 144, seed=13)
    h, w = 80, 96
    sy, sx = 12, 28  # multiples of 2^(levels-1): the pyramid grids line up
    a = canvas[..., 0:h, 0:w]
    b = canvas[..., sy : sy + h, sx : sx + w]
    fa = [[50.3, 47.8]]
    fb = [[50.3 - sx, 47.8 - sy]]
    out_a, out_b = fov(a, fa), fov(b, fb)
    m = 3 * 2**levels  # beyond the filters' reach of the borders
    np.testing.assert_allclose(
        out_b[..., m : h - sy - m, m : w - sx - m].numpy(),
        out_a[..., sy + m : h - m, sx + m : w - m].numpy(),
        atol=1e-6,
    )
    assert (out_a - a).abs().max() > 0.1  # something was actually blurred


def test_uint8_and_float_paths_agree():
    fov = Foveator(**STEEP)
    x8 = (torch.rand(2, 3, 33, 47, generator=torch.Generator().manual_seed(2)) * 255).round().to(torch.uint8)
    fix = [[5.0, 5.0], [40.0, 20.0]]
    out8 = fov(x8, fix)
    assert out8.dtype == torch.uint8 and out8.shape == x8.shape
    outf = fov(x8.float() / 255, fix)
    diff = (out8.float() - outf * 255).abs()
    assert diff.max() <= 0.5 + 1e-3  # uint8 is the float result, rounded
    out64 = fov(x8.double() / 255, fix)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), outf, atol=1e-5, rtol=0)
    out16 = fov((x8.float() / 255).to(torch.bfloat16), fix)
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), outf, atol=1e-2, rtol=0)


def test_output_keeps_shape_dtype_device_and_does_not_touch_input():
    fov = Foveator()
    x = _noise(2, 1, 20, seed=1, c=1)
    before = x.clone()
    out = fov(x, np.array([[3.0, 0.0], [19.0, 0.0]]))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.equal(x, before) and out.data_ptr() != x.data_ptr()
    assert fov(x[:0], np.zeros((0, 2))).shape == (0, 1, 1, 20)


def test_non_contiguous_input_gives_the_same_result():
    fov = Foveator(**STEEP)
    x = _noise(2, 30, 44, seed=9)
    fix = [[3.0, 4.0], [40.0, 25.0]]
    want = fov(x, fix)
    torch.testing.assert_close(fov(x.contiguous(memory_format=torch.channels_last), fix), want, atol=1e-6, rtol=0)
    wide = _noise(2, 30, 88, seed=9)
    wide[..., ::2] = x
    torch.testing.assert_close(fov(wide[..., ::2], fix), want, atol=1e-6, rtol=0)


def test_params_are_json_and_rebuild_the_same_filter():
    fov = Foveator(pixels_per_degree=24.0, levels=4)
    p = fov.params()
    assert set(p) == {"pixels_per_degree", "e2", "ct0", "alpha", "levels"}
    assert Foveator(**json.loads(json.dumps(p))).params() == p


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pixels_per_degree": 0}, "pixels_per_degree"),
        ({"pixels_per_degree": float("nan")}, "pixels_per_degree"),
        ({"e2": -1.0}, "e2"),
        ({"alpha": 0.0}, "alpha"),
        ({"ct0": 0.0}, "ct0"),
        ({"ct0": 1.5}, "ct0"),
        ({"levels": 0}, "levels"),
        ({"levels": 2.5}, "levels"),
        ({"backend": "opencl"}, "backend"),
    ],
)
def test_invalid_parameters_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=f"expected.*{match}|{match}.*expected"):
        Foveator(**kwargs)


@pytest.mark.parametrize(
    "images, fixations, match",
    [
        (torch.rand(3, 8, 8), [[1.0, 1.0]], r"shape \(B, C, H, W\)"),
        (torch.rand(2, 3, 8, 8), [[1.0, 1.0]], r"\(B, 2\) = \(2, 2\)"),
        (torch.rand(1, 3, 8, 8), [[1.0, 1.0, 1.0]], r"\(B, 2\)"),
        (torch.rand(1, 3, 8, 8), [[float("nan"), 1.0]], "finite"),
        (torch.rand(1, 3, 8, 8), [["a", 1.0]], "fixations"),
        (torch.ones(1, 3, 8, 8, dtype=torch.int32), [[1.0, 1.0]], "uint8 or floating"),
        (torch.ones(1, 3, 8, 8, dtype=torch.bool), [[1.0, 1.0]], "uint8 or floating"),
        (np.zeros((1, 3, 8, 8)), [[1.0, 1.0]], "torch.Tensor"),
        (torch.rand(1, 3, 0, 8), [[1.0, 1.0]], "H, W >= 1"),
    ],
)
def test_invalid_input_raises_value_error_saying_what_was_expected(images, fixations, match):
    with pytest.raises(ValueError, match=match):
        Foveator()(images, fixations)
    with pytest.raises(ValueError, match="expected"):
        Foveator()(images, fixations)


def test_helpers_validate_sizes():
    with pytest.raises(ValueError, match="height, width >= 1"):
        Foveator().cutoff_map(0, 5, [[0.0, 0.0]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():  # pragma: no cover - no GPU in CI
    x = _noise(3, 64, 96, seed=4)
    fix = [[10.0, 10.0], [60.0, 30.0], [-20.0, 80.0]]
    for backend in ("torch", "auto"):
        fov = Foveator(**STEEP, backend=backend)
        cpu = fov(x, fix)
        gpu = fov(x.cuda(), torch.tensor(fix).cuda())
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-4, rtol=0)


def test_eccentricity_for_cutoff_inverts_the_cutoff():
    from fovea_ray.foveation.model import E2, cutoff_cpd, eccentricity_for_cutoff

    ecc = np.array([0.0, 0.5, 2.3, 8.0, 12.0, 40.0])
    np.testing.assert_allclose(eccentricity_for_cutoff(cutoff_cpd(ecc)), ecc, rtol=0, atol=1e-12)
    f = np.array([1.0, 6.4, 15.0, 39.0])
    np.testing.assert_allclose(cutoff_cpd(eccentricity_for_cutoff(f)), f, rtol=1e-12)
    # Other parameters, and torch tensors, round-trip too.
    kw = dict(e2=1.0, ct0=0.05, alpha=0.2)
    np.testing.assert_allclose(eccentricity_for_cutoff(cutoff_cpd(ecc, **kw), **kw), ecc, atol=1e-12)
    t = torch.tensor([3.0, 9.0], dtype=torch.float64)
    assert torch.allclose(eccentricity_for_cutoff(cutoff_cpd(t)), t)
    # The half-resolution eccentricity: the cutoff is half the fovea's there.
    assert eccentricity_for_cutoff(cutoff_cpd(0.0) / 2) == pytest.approx(E2)
    assert eccentricity_for_cutoff(cutoff_cpd(0.0) * 2) < 0  # finer than the fovea resolves: nowhere


def test_foveation_model_is_torch_free():
    """The driver reads the Geisler-Perry defaults without importing torch."""
    import subprocess
    import sys

    code = (
        "import sys; import fovea_ray.foveation.model as m; from fovea_ray.data.manifest import build_manifest; "
        "assert m.E2 == 2.3 and m.CT0 == 1 / 64 and m.ALPHA == 0.106; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
