"""Decode image bytes, and render the model's input: foveate, crop the window, paste on a canvas.

Both ``fovea-ray prepare --preview`` and the extraction pipeline call :func:`render_batch`,
so the preview shows exactly what the model sees.

Rendering semantics (the definition the fast path reproduces): each image is foveated *as
a whole* at its fixation (source pixel coordinates, which may lie outside the image); its
window ``(x, y, w, h)`` in source pixels is then cut out, the part of the window outside the
image filled with grey 0.5, and the window pasted centred on a grey ``canvas_hw`` canvas
without any rescaling (a window larger than the canvas keeps its centre part).

The fast path foveates only what the window needs. Each image contributes a cut: the
visible part of its window plus a margin chosen from the coarsest pyramid level any window
pixel needs (:func:`auto_margin`), with its origin aligned to that level's stride so every
pyramid grid coincides with the full image's. On an axis where the margin would reach the
image's far border the cut takes the whole axis instead, so the foveator meets the image's
own border exactly as when it foveates the whole image. Cuts that can share a size (equal
on whole-axis sides; any size on interior sides, padded past the margin) are stacked and
foveated in one call per group, with the fixations shifted into each cut's coordinates;
then the windows are pasted. The result equals foveating each whole image and cropping, to
float rounding (``margin=None`` does exactly that; tests bound the difference at 1e-4), and
a batch equals its images rendered one by one.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fovea_ray.errors import InputError
from fovea_ray.foveation import model as gp

__all__ = ["auto_margin", "decode_image", "render_batch", "GREY"]

#: The fill value of the canvas and of the window's part outside the image.
GREY = 0.5

_JPEG_MAGIC = b"\xff\xd8\xff"


def _torchvision_reason(exc: BaseException) -> str:
    # torchvision prefixes its C++ source location ("decode_jpeg, /path/x.cpp:171, why").
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg.rsplit(".cpp:", 1)[-1].split(", ", 1)[-1] if ".cpp:" in msg else msg


def _pil_decode(data: bytes) -> torch.Tensor:
    """Decode with PIL to float (3, H, W); alpha is composited over grey 0.5."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()  # forces a full decode: truncated data raises here
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float32) / 65535.0
            arr = np.repeat(np.clip(arr, 0, 1)[..., None], 3, axis=2)
        elif im.mode == "F":
            arr = np.repeat(np.clip(np.asarray(im, dtype=np.float32), 0, 1)[..., None], 3, axis=2)
        else:
            has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            rgba = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
            if has_alpha:
                a = rgba[..., 3:4]
                arr = rgba[..., :3] * a + GREY * (1 - a)
            else:
                arr = rgba
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def decode_image(data: bytes | bytearray | memoryview, *, device: str | torch.device | None = None) -> torch.Tensor:
    """Decode encoded image bytes to an RGB float tensor (3, H, W) in [0, 1].

    JPEG (including greyscale and CMYK JPEG) is decoded by ``torchvision.io`` -- on a CUDA
    ``device`` with nvJPEG (``torchvision.io.decode_jpeg(device=...)``), falling back to the
    CPU decoder. Everything else (PNG, 16-bit PNG, palette, alpha, WebP, GIF, BMP, TIFF ...)
    is decoded by Pillow. Greyscale becomes three equal channels; an alpha channel is
    composited over grey 0.5, the canvas colour. EXIF orientation is *not* applied: COCO's
    boxes refer to the stored pixel grid.

    Raises
    ------
    InputError
        For empty, truncated, corrupt or unsupported data, with the decoder's reason.
    """
    data = bytes(data)
    if len(data) == 0:
        raise InputError("cannot decode image: the data is empty (0 bytes)")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    reasons: list[str] = []
    if data.startswith(_JPEG_MAGIC):
        from torchvision.io import ImageReadMode, decode_jpeg

        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if dev.type == "cuda":
            try:
                out = decode_jpeg(raw, mode=ImageReadMode.RGB, device=dev)
                return out.float().div_(255.0)
            except Exception as exc:  # noqa: BLE001 - nvJPEG lacks some JPEG flavours; the CPU may not
                reasons.append(f"nvjpeg: {_torchvision_reason(exc)}")
        try:
            out = decode_jpeg(raw, mode=ImageReadMode.RGB)
            return out.to(dev).float().div_(255.0)
        except Exception as exc:  # noqa: BLE001 - fall through to Pillow, then report both
            reasons.append(f"torchvision: {_torchvision_reason(exc)}")
    try:
        return _pil_decode(data).to(dev)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input here
        from PIL import UnidentifiedImageError

        why = (
            f"not a recognised image format (starts with {data[:8].hex()})"
            if isinstance(exc, UnidentifiedImageError)
            else str(exc)
        )
        reasons.append(why if not reasons else f"pillow: {why}")
    raise InputError(f"cannot decode image ({len(data)} bytes): " + "; ".join(reasons))


def _foveator_params(foveator: Any) -> dict:
    params = foveator.params() if hasattr(foveator, "params") else {}
    return {
        "pixels_per_degree": float(
            params.get("pixels_per_degree", getattr(foveator, "pixels_per_degree", gp.PIXELS_PER_DEGREE))
        ),
        "e2": float(params.get("e2", getattr(foveator, "e2", gp.E2))),
        "ct0": float(params.get("ct0", getattr(foveator, "ct0", gp.CT0))),
        "alpha": float(params.get("alpha", getattr(foveator, "alpha", gp.ALPHA))),
        "levels": params.get("levels", getattr(foveator, "levels", None)),
    }


def auto_margin(foveator: Any, max_eccentricity_px: float, factor: int = 6) -> tuple[int, int]:
    """(margin, stride) in pixels for a window whose farthest pixel is ``max_eccentricity_px``
    from the fixation.

    The Geisler-Perry cutoff at eccentricity ``e`` degrees is
    ``f_c(e) = e2 ln(1/ct0) / (alpha (e + e2))`` cycles/degree (Geisler & Perry 1998); the
    coarsest pyramid level ``L`` any window pixel blends toward is the first whose cutoff
    is below ``f_c`` there (Perry & Geisler 2002). Its samples are ``2**L`` pixels apart and
    each, through the 4-tap binomial decimations and the bilinear upsamplings back, draws on
    a few of its own samples' worth of source pixels: a margin of ``factor * 2**L`` (with
    ``factor=6``) leaves the window's result unchanged by the cut (the tests bound it). Cuts
    are aligned to ``stride = 2**L`` so every level's sampling grid matches the full image's.
    """
    p = _foveator_params(foveator)
    far = max(float(max_eccentricity_px), 0.0)
    model = getattr(foveator, "model", None)
    levels = None
    for _ in range(2):  # the margin itself reaches farther out: cover the whole cut
        if model is not None and hasattr(model, "levels_to_cover"):
            levels = int(model.levels_to_cover(far, 32))
        else:  # generic Geisler-Perry model; level k's cutoff ~ 0.5 / 2**k cycles/pixel
            ppd = p["pixels_per_degree"]
            fc = gp.cutoff_cpd(far / ppd, e2=p["e2"], ct0=p["ct0"], alpha=p["alpha"])
            levels = 2 + max(0, math.ceil(math.log2(max((ppd / 2.0) / fc, 1.0))))
        if p["levels"] is not None:
            levels = min(levels, int(p["levels"]))
        far = float(max_eccentricity_px) + factor * 2 ** max(levels - 1, 0) * math.sqrt(2)
    stride = 2 ** max(levels - 1, 0)
    return factor * stride, stride


def _as_array(x: Any, cols: int, name: str, n: int) -> np.ndarray:
    arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if arr.shape != (n, cols):
        raise ValueError(f"{name} must have shape ({n}, {cols}), got {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def render_batch(
    images: Sequence[torch.Tensor] | torch.Tensor,
    fixations: Any,
    windows_xywh: Any,
    canvas_hw: tuple[int, int] | Sequence[int],
    foveator: Any,
    device: str | torch.device | None = None,
    *,
    margin: int | str | None = "auto",
) -> torch.Tensor:
    """Foveate each image at its fixation, crop its window and paste it centred on a grey canvas.

    Parameters
    ----------
    images:
        ``B`` tensors (3, H_i, W_i), float in [0, 1] (uint8 is scaled), sizes may differ;
        or one (B, 3, H, W) tensor.
    fixations:
        (B, 2) fixations (x, y) in each image's source pixels; may lie outside the image.
    windows_xywh:
        (B, 4) integer windows (x, y, w, h) in source pixels; may extend past the image.
    canvas_hw:
        (Hc, Wc) of the output canvas.
    foveator:
        A :class:`fovea_ray.foveation.Foveator` (called once on the whole batch).
    device:
        Where to compute; defaults to the first image's device.
    margin:
        ``"auto"`` (default; see :func:`auto_margin`), an int number of pixels, or ``None`` to
        foveate the whole images (exact reference, slower).

    Returns
    -------
    torch.Tensor
        (B, 3, Hc, Wc) float32 on ``device``.
    """
    imgs = list(images) if not isinstance(images, torch.Tensor) or images.dim() == 4 else [images]
    n = len(imgs)
    if n == 0:
        raise ValueError("render_batch needs at least one image")
    for i, im in enumerate(imgs):
        if not isinstance(im, torch.Tensor) or im.dim() != 3 or im.shape[0] != 3:
            shape = tuple(im.shape) if isinstance(im, torch.Tensor) else type(im).__name__
            raise ValueError(f"images[{i}] must be a (3, H, W) tensor, got {shape}")
    fix = _as_array(fixations, 2, "fixations", n)
    win = _as_array(windows_xywh, 4, "windows_xywh", n)
    if np.any(win != np.round(win)) or np.any(win[:, 2:] < 1):
        raise ValueError("windows_xywh must be integers with w, h >= 1")
    win = win.astype(np.int64)
    hc, wc = (int(canvas_hw[0]), int(canvas_hw[1]))
    if hc < 1 or wc < 1:
        raise ValueError(f"canvas_hw must be positive, got {tuple(canvas_hw)}")
    dev = torch.device(device) if device is not None else imgs[0].device

    # 1. The cut of each image: its visible window part plus a margin, per axis either an
    #    interior span (its far end inside the image: padding past it cannot reach the
    #    window) or the whole axis (it reaches the far border: kept exact, so the foveator
    #    meets the image's own border just as when it foveates the whole image).
    cuts: list[_Cut] = []
    for i, im in enumerate(imgs):
        h, w = int(im.shape[1]), int(im.shape[2])
        x0, y0, ww, wh = (int(v) for v in win[i])
        vis = (max(x0, 0), max(y0, 0), min(x0 + ww, w), min(y0 + wh, h))
        if margin is None:
            m, stride = None, 1
        elif margin == "auto":
            corners = np.array([[x0, y0], [x0 + ww, y0], [x0, y0 + wh], [x0 + ww, y0 + wh]], float)
            m, stride = auto_margin(foveator, float(np.max(np.hypot(*(corners - fix[i]).T))))
        else:
            m, stride = int(margin), 1
        cuts.append(_Cut.make(vis, h, w, m, stride))

    # 2. Group cuts that can share one foveator call: equal sizes on their whole-axis sides,
    #    any size on interior sides (padded up). One call per group, not per image.
    groups: list[_Group] = []
    for i in sorted(range(n), key=lambda j: (cuts[j].free_h + cuts[j].free_w, j)):
        for grp in groups:
            if grp.accepts(cuts[i]):
                grp.add(i, cuts[i])
                break
        else:
            groups.append(_Group(i, cuts[i]))

    canvas = torch.full((n, 3, hc, wc), GREY, dtype=torch.float32, device=dev)
    for grp in groups:
        stack = torch.empty((len(grp.members), 3, grp.h, grp.w), dtype=torch.float32, device=dev)
        for slot, i in enumerate(grp.members):
            c = cuts[i]
            part = imgs[i][:, c.y0 : c.y1, c.x0 : c.x1].to(dev)
            part = part.float().div(255.0) if part.dtype == torch.uint8 else part.float()
            if part.shape[1:] != (grp.h, grp.w):
                # Only interior sides are padded, so what is padded in lies beyond the margin.
                part = torch.nn.functional.pad(
                    part[None], (0, grp.w - part.shape[2], 0, grp.h - part.shape[1]), mode="replicate"
                )[0]
            stack[slot] = part
        shifted = torch.as_tensor(
            fix[grp.members] - np.array([[cuts[i].x0, cuts[i].y0] for i in grp.members], float),
            dtype=torch.float32,
            device=dev,
        )
        fov = foveator(stack, shifted)
        for slot, i in enumerate(grp.members):
            c = cuts[i]
            x0, y0, ww, wh = (int(v) for v in win[i])
            vx0, vy0, vx1, vy1 = c.vis
            # Window pixel (u, v) lands on canvas pixel (u + ox, v + oy): centred, not rescaled.
            ox, oy = (wc - ww) // 2, (hc - wh) // 2
            px0, py0 = max(vx0 - x0 + ox, 0), max(vy0 - y0 + oy, 0)
            px1, py1 = min(vx1 - x0 + ox, wc), min(vy1 - y0 + oy, hc)
            if px1 <= px0 or py1 <= py0:
                continue  # the window misses the image (or the canvas): all grey
            sx0, sy0 = px0 - ox + x0 - c.x0, py0 - oy + y0 - c.y0
            canvas[i, :, py0:py1, px0:px1] = fov[slot, :, sy0 : sy0 + (py1 - py0), sx0 : sx0 + (px1 - px0)]
    return canvas


class _Cut:
    """The source rectangle [x0, x1) x [y0, y1) foveated for one image, and its window part."""

    __slots__ = ("x0", "y0", "x1", "y1", "free_w", "free_h", "vis")

    @classmethod
    def make(cls, vis: tuple[int, int, int, int], h: int, w: int, m: int | None, stride: int) -> _Cut:
        self = cls()
        self.vis = vis
        vx0, vy0, vx1, vy1 = vis
        if vx1 <= vx0 or vy1 <= vy0:  # nothing of the image is visible: a token 1x1 cut
            self.x0, self.y0, self.x1, self.y1, self.free_w, self.free_h = 0, 0, 1, 1, True, True
            return self
        for lo, hi, size, names in ((vx0, vx1, w, ("x0", "x1", "free_w")), (vy0, vy1, h, ("y0", "y1", "free_h"))):
            if m is None or hi + m >= size:
                start, end, free = 0, size, False  # reaches the far border: the whole axis
            else:
                # Aligned to the coarsest level's stride: the pyramid grids then coincide.
                start, end, free = (max(lo - m, 0) // stride) * stride, hi + m, True
            setattr(self, names[0], start)
            setattr(self, names[1], end)
            setattr(self, names[2], free)
        return self


class _Group:
    """Cuts foveated in one call: (h, w) is the stack size; a fixed side admits equal sizes only."""

    def __init__(self, i: int, cut: _Cut):
        self.members = [i]
        self.h, self.w = cut.y1 - cut.y0, cut.x1 - cut.x0
        self.free_h, self.free_w = cut.free_h, cut.free_w

    def _fits(self, size: int, free: bool, gsize: int, gfree: bool) -> bool:
        return (size == gsize and not gfree) if not free else (gfree or size <= gsize)

    def accepts(self, cut: _Cut) -> bool:
        return self._fits(cut.y1 - cut.y0, cut.free_h, self.h, self.free_h) and self._fits(
            cut.x1 - cut.x0, cut.free_w, self.w, self.free_w
        )

    def add(self, i: int, cut: _Cut) -> None:
        self.members.append(i)
        if self.free_h:
            self.h = max(self.h, cut.y1 - cut.y0)
        if self.free_w:
            self.w = max(self.w, cut.x1 - cut.x0)
