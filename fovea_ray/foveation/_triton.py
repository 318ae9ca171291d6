"""A fused Triton kernel for one step of the coarse-to-fine blend (CUDA; optional).

The torch path spends one step of the cascade (:func:`fovea_ray.foveation.blend.render`)
in four kernels and three full-size temporaries: the bilinear 2× upsampling of the
coarser result, the squared distance to the fixation, the table lookup of the blend
weight, and the lerp. This kernel does all four per output pixel in registers, reading
each level once and writing the result once, with the weight computed once per pixel
and shared by the channels. The arithmetic follows the torch path term by term (same
table, same bilinear weights as ``upsample_bilinear2d(align_corners=False)``, same
two-sided lerp), so the two agree to float32 rounding; the decimation pyramid stays in
torch. Tested on the CPU with ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import functools
import os

import torch

from fovea_ray.foveation.blend import _device_table
from fovea_ray.foveation.model import ResolutionModel, blend_table
from fovea_ray.foveation.pyramid import build_pyramid

_BLOCK_W = 256


def available() -> bool:
    """True where the kernel can run compiled: Triton importable and CUDA present."""
    if not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def _kernel(interpret: str):
    """The jitted kernel; rebuilt when ``TRITON_INTERPRET`` changes (the CPU tests)."""
    import triton
    import triton.language as tl

    @triton.jit
    def _blend_level(
        g_ptr,
        v_ptr,
        out_ptr,
        fix_ptr,
        tab_ptr,
        C,
        h,
        w,
        hc,
        wc,
        q_max,
        spacing,
        offset,
        q_lo,
        inv_step,
        BLOCK_W: tl.constexpr,
    ):
        row = tl.program_id(0)  # one row of one image: b * h + y
        b = row // h
        y = row % h
        xs = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
        mask = xs < w
        # Blend weight: the same table lookup as blend.blend_fraction_map.
        fx = tl.load(fix_ptr + 2 * b)
        fy = tl.load(fix_ptr + 2 * b + 1)
        dx = xs.to(tl.float32) * spacing + offset - fx
        dy = y.to(tl.float32) * spacing + offset - fy
        q = (dy * dy - q_lo) * inv_step + dx * dx * inv_step
        q = tl.minimum(tl.maximum(q, 0.0), q_max)
        t = tl.load(tab_ptr + q.to(tl.int32), mask=mask, other=0.0)
        # Bilinear 2x source position (align_corners=False, clamped at the border).
        sy = tl.maximum((y.to(tl.float32) + 0.5) * 0.5 - 0.5, 0.0)
        y0 = sy.to(tl.int32)
        ly = sy - y0.to(tl.float32)
        y1 = tl.minimum(y0 + 1, hc - 1)
        sx = tl.maximum((xs.to(tl.float32) + 0.5) * 0.5 - 0.5, 0.0)
        x0 = sx.to(tl.int32)
        lx = sx - x0.to(tl.float32)
        x1 = tl.minimum(x0 + 1, wc - 1)
        for c in range(C):
            plane = (b * C + c).to(tl.int64)
            vb = v_ptr + plane * hc * wc
            v00 = tl.load(vb + y0 * wc + x0, mask=mask, other=0.0)
            v01 = tl.load(vb + y0 * wc + x1, mask=mask, other=0.0)
            v10 = tl.load(vb + y1 * wc + x0, mask=mask, other=0.0)
            v11 = tl.load(vb + y1 * wc + x1, mask=mask, other=0.0)
            u = (1.0 - ly) * ((1.0 - lx) * v00 + lx * v01) + ly * ((1.0 - lx) * v10 + lx * v11)
            off = plane * h * w + y * w + xs
            g = tl.load(g_ptr + off, mask=mask, other=0.0)
            # torch.lerp's two-sided form: t == 0 returns g exactly.
            res = tl.where(t < 0.5, g + t * (u - g), u - (u - g) * (1.0 - t))
            tl.store(out_ptr + off, res, mask=mask)

    return _blend_level


def render(x: torch.Tensor, fixations: torch.Tensor, model: ResolutionModel, levels: int) -> torch.Tensor:
    """Same contract as :func:`fovea_ray.foveation.blend.render`, float32 only."""
    if x.dtype != torch.float32:
        raise ValueError(f"expected float32 images for the Triton path, got {x.dtype}")
    if levels == 1:
        return x.clone()
    import triton

    kernel = _kernel(os.environ.get("TRITON_INTERPRET", "0"))
    fix = fixations.to(torch.float32).contiguous()
    pyramid = build_pyramid(x, levels)
    b, c = x.shape[:2]
    v = pyramid[-1].contiguous()
    for j in range(levels - 2, -1, -1):
        g = pyramid[j].contiguous()
        h, w = g.shape[-2:]
        table = blend_table(model, j)
        tab = _device_table(model, j, x.device, torch.float32)
        out = torch.empty_like(g)
        grid = (b * h, triton.cdiv(w, _BLOCK_W))
        kernel[grid](
            g,
            v,
            out,
            fix,
            tab,
            # q_max goes in as a float: Triton would specialise an int table size of 1.
            c,
            h,
            w,
            v.shape[-2],
            v.shape[-1],
            float(tab.shape[0] - 1),
            float(2**j),
            (2.0**j - 1.0) / 2.0,
            float(table.q_lo),
            1.0 / float(table.step),
            BLOCK_W=_BLOCK_W,
        )
        v = out
        pyramid[j + 1] = None
    return v
