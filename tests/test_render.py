"""decode_image on every kind of bytes, and render_batch's geometry and fidelity."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fovea_ray.data.render import GREY, auto_margin, decode_image, render_batch
from fovea_ray.errors import InputError


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Smooth content, so JPEG round trips are close to the source.
    small = rng.random((6, 8, 3))
    return np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((64, 48), Image.BILINEAR))


def test_decode_formats_agree_with_pillow(rgb):
    im = Image.fromarray(rgb)
    for name, data, mode in [
        ("jpeg", _encode(im, "JPEG", quality=95), "RGB"),
        ("png", _encode(im, "PNG"), "RGB"),
        ("greyscale jpeg", _encode(im.convert("L"), "JPEG", quality=95), "RGB"),
        ("greyscale png", _encode(im.convert("L"), "PNG"), "RGB"),
        ("cmyk jpeg", _encode(im.convert("CMYK"), "JPEG", quality=95), "RGB"),
        ("palette png", _encode(im.convert("P"), "PNG"), "RGB"),
        ("webp", _encode(im, "WEBP", lossless=True), "RGB"),
        ("bmp", _encode(im, "BMP"), "RGB"),
    ]:
        out = decode_image(data)
        ref = np.asarray(Image.open(io.BytesIO(data)).convert(mode), np.float32).transpose(2, 0, 1) / 255
        assert out.shape == (3, 48, 64) and out.dtype == torch.float32, name
        assert np.abs(out.numpy() - ref).max() <= 1.5 / 255, name
        if "greyscale" in name:
            assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_decode_alpha_is_composited_over_grey(rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :, 3] = 0  # transparent rows -> grey
    rgba[10:20, :, 3] = 128  # half transparent -> halfway to grey
    out = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG")).numpy()
    assert np.allclose(out[:, :10], GREY)
    src = rgb.transpose(2, 0, 1) / 255
    assert np.allclose(out[:, 10:20], src[:, 10:20] * 128 / 255 + GREY * (1 - 128 / 255), atol=1e-5)
    assert np.allclose(out[:, 20:], src[:, 20:], atol=1e-6)


def test_decode_bad_bytes_raise_input_error_with_the_reason(rgb):
    jpeg = _encode(Image.fromarray(rgb), "JPEG")
    png = _encode(Image.fromarray(rgb), "PNG")
    for data, why in [
        (b"", "empty"),
        (jpeg[: len(jpeg) // 2], "truncated"),
        (png[: len(png) // 2], "truncated"),
        (b"this is not an image" * 5, "not a recognised image format"),
    ]:
        with pytest.raises(InputError, match="cannot decode image") as err:
            decode_image(data)
        assert why in str(err.value).lower(), str(err.value)


class Identity:
    """No blur: isolates the crop-and-paste geometry."""

    def __call__(self, images, fixations):
        return images.clone()

    def params(self):
        return {"pixels_per_degree": 30.0, "e2": 2.3, "ct0": 1 / 64, "alpha": 0.106, "levels": 1}


def reference_paste(img: torch.Tensor, window, canvas_hw) -> torch.Tensor:
    """Pixel by pixel, straight from the definition."""
    hc, wc = canvas_hw
    x0, y0, w, h = window
    out = torch.full((3, hc, wc), GREY)
    ox, oy = (wc - w) // 2, (hc - h) // 2
    for v in range(h):
        for u in range(w):
            sx, sy, cx, cy = x0 + u, y0 + v, u + ox, v + oy
            if 0 <= cx < wc and 0 <= cy < hc and 0 <= sx < img.shape[2] and 0 <= sy < img.shape[1]:
                out[:, cy, cx] = img[:, sy, sx]
    return out


def test_crop_and_paste_geometry_and_grey_fill():
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(3, 30, 40, generator=g), torch.rand(3, 50, 20, generator=g), torch.rand(3, 24, 24, generator=g)]
    windows = [[-6, -4, 20, 16], [3, 35, 18, 22], [100, 100, 10, 10]]  # past the border, partly below, outside
    out = render_batch(imgs, [[0, 0], [5, 5], [1, 1]], windows, (20, 26), Identity())
    assert out.shape == (3, 3, 20, 26)
    for i in range(3):
        assert torch.equal(out[i], reference_paste(imgs[i], windows[i], (20, 26))), i
    assert torch.all(out[2] == GREY)  # a window that misses the image is all grey
    # A window larger than the canvas keeps its centre part.
    big = render_batch([imgs[0]], [[0, 0]], [[0, 0, 40, 30]], (10, 12), Identity())[0]
    assert torch.equal(big, imgs[0][:, 10:20, 14:26])


def test_object_lands_centred_on_the_canvas(synthetic_coco):
    from fovea_ray.data.manifest import build_manifest
    from fovea_ray.foveation import Foveator

    df = build_manifest(
        synthetic_coco / "instances.json",
        synthetic_coco / "images",
        canvas=128,
        n_per_type=3,
        ecc_band=(8.0, 12.0),
        max_window_fraction=0.5,
    )
    imgs = [decode_image(open(u, "rb").read()) for u in df["image_uri"]]
    fix = np.stack(df["fixation_xy"].to_numpy())
    win = np.stack(df["window_xywh"].to_numpy())
    out = render_batch(imgs, fix, win, (128, 128), Foveator(pixels_per_degree=30.0))
    for k, r in enumerate(df.itertuples()):
        x, y, w, h = r.bbox
        wx, wy = r.window_xywh[:2]
        # The object's box on the canvas is centred (within half a pixel of rounding).
        assert abs((x - wx) + w / 2 - 64) <= 0.5 and abs((y - wy) + h / 2 - 64) <= 0.5
        # ...and the canvas shows the source pixels there (blurred or not, close in the mean).
        bx0, by0 = int(np.ceil(x)), int(np.ceil(y))
        bx1, by1 = int(np.floor(x + w)), int(np.floor(y + h))
        src = imgs[k][:, by0:by1, bx0:bx1]
        can = out[k][:, by0 - wy : by1 - wy, bx0 - wx : bx1 - wx]
        assert (src.mean() - can.mean()).abs() < 0.02


def test_fast_path_equals_foveating_the_whole_image():
    """Cut + margin + grouping gives what foveating each full image and cropping gives."""
    from fovea_ray.foveation import Foveator

    fov = Foveator(pixels_per_degree=30.0)
    rng = np.random.default_rng(1)
    g = torch.Generator().manual_seed(1)
    sizes = [(180, 240), (240, 180), (180, 240), (150, 200), (200, 200)]
    imgs = [torch.rand(3, h, w, generator=g) for h, w in sizes]
    fix, win = [], []
    for k, (h, w) in enumerate(sizes):
        cx, cy = rng.uniform(10, w - 10), rng.uniform(10, h - 10)
        r = 0.0 if k % 2 == 0 else rng.uniform(15, 25) * 30  # far fixations need several levels
        t = rng.uniform(0, 2 * np.pi)
        fix.append([cx - r * np.cos(t), cy - r * np.sin(t)])
        win.append([int(round(cx - 48)), int(round(cy - 48)), 96, 96])
    fast = render_batch(imgs, fix, win, (96, 96), fov)
    exact = render_batch(imgs, fix, win, (96, 96), fov, margin=None)
    assert (fast - exact).abs().max() < 1e-4  # float rounding; a grey level is 4e-3
    # ... and one image at a time is the same as the batch.
    for k in range(len(imgs)):
        single = render_batch([imgs[k]], [fix[k]], [win[k]], (96, 96), fov)[0]
        assert (single - fast[k]).abs().max() < 1e-4
    # The margin grows with the blur the window needs, and cuts align to the coarsest level.
    (m_near, s_near), (m_far, s_far) = auto_margin(fov, 50.0), auto_margin(fov, 2000.0)
    assert m_far > m_near and s_far > s_near and m_far % s_far == 0


def test_type1_is_sharper_than_type0_and_uint8_matches_float(synthetic_coco):
    from fovea_ray.foveation import Foveator

    img = decode_image((synthetic_coco / "images" / "000000.jpg").read_bytes())
    h, w = img.shape[1:]
    c = (w / 2, h / 2)
    win = [[int(c[0] - 48), int(c[1] - 48), 96, 96]] * 2
    fix = [list(c), [c[0] - 12 * 30, c[1]]]  # object centre at 0 and at 12 degrees
    fov = Foveator(pixels_per_degree=30.0)
    out = render_batch([img, img], fix, win, (96, 96), fov)

    def hf(x):  # high-frequency energy: mean squared Laplacian
        lap = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
        return float((lap**2).mean())

    assert hf(out[0]) > 1.5 * hf(out[1])
    # The fovea is untouched: type 1's centre equals the source pixels exactly.
    assert torch.equal(
        out[0][:, 40:56, 40:56],
        img[:, int(c[1] - 48) + 40 : int(c[1] - 48) + 56, int(c[0] - 48) + 40 : int(c[0] - 48) + 56],
    )
    as_uint8 = (img * 255).round().to(torch.uint8)
    out8 = render_batch([as_uint8, as_uint8], fix, win, (96, 96), fov)
    assert out8.dtype == torch.float32 and (out8 - out).abs().max() < 1e-5


def test_bad_arguments():
    img = torch.rand(3, 10, 10)
    with pytest.raises(ValueError, match="fixations"):
        render_batch([img], [[1, 2, 3]], [[0, 0, 5, 5]], (8, 8), Identity())
    with pytest.raises(ValueError, match="windows_xywh"):
        render_batch([img], [[1, 2]], [[0, 0, 5.5, 5]], (8, 8), Identity())
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        render_batch([torch.rand(10, 10)], [[1, 2]], [[0, 0, 5, 5]], (8, 8), Identity())
    with pytest.raises(ValueError, match="at least one"):
        render_batch([], np.zeros((0, 2)), np.zeros((0, 4)), (8, 8), Identity())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(rgb):  # pragma: no cover - no GPU here
    from fovea_ray.foveation import Foveator

    data = _encode(Image.fromarray(rgb), "JPEG", quality=95)
    cpu, gpu = decode_image(data), decode_image(data, device="cuda")
    assert gpu.device.type == "cuda" and (gpu.cpu() - cpu).abs().max() < 3 / 255
    fov = Foveator(pixels_per_degree=30.0)
    a = render_batch([cpu], [[5, 5]], [[0, 0, 40, 40]], (48, 48), fov)
    b = render_batch([cpu.cuda()], [[5, 5]], [[0, 0, 40, 40]], (48, 48), fov, device="cuda")
    assert (a - b.cpu()).abs().max() < 1e-4
