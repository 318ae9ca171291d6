"""A centred Gaussian (binomial) pyramid: 2× blur-and-decimate and 2× bilinear upsampling.

Geometry: sample ``i`` of level ``k`` sits at full-resolution pixel coordinate
``2^k·i + (2^k - 1)/2`` (pixel centres at integers). This is the geometry of
``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)``, so the
upsampling puts every level back exactly where it came from, with no half-pixel drift.

Decimation filters with the centred 4-tap binomial kernel [1, 3, 3, 1]/8 (a Gaussian
approximation with amplitude response cos³(πf); Burt & Adelson 1983 use its 5-tap
odd-centred sibling) and keeps every second sample. Borders
replicate the edge pixel; an odd size gets one replicated pixel past its end, so a level
of size ``n`` has ``ceil(n/2)`` samples. Everything runs on strided views and in-place
adds: on the CPU a fresh full-size tensor costs as much as an arithmetic pass over it.
"""

from __future__ import annotations

import torch


def _down_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """[1, 3, 3, 1] filter and decimate along ``dim`` (unnormalised: the sum is 8×)."""
    even = x[_stride_index(x.dim(), dim, 0)]
    odd = x[_stride_index(x.dim(), dim, 1)]
    ne, no = even.shape[dim], odd.shape[dim]
    if ne == no:
        # y[i] = x[2i-1] + 3x[2i] + 3x[2i+1] + x[2i+2] in three passes (edges replicate).
        shape = list(even.shape)
        y = torch.empty(shape, dtype=x.dtype, device=x.device)
        if ne > 1:
            torch.add(odd.narrow(dim, 0, no - 1), even.narrow(dim, 1, ne - 1), alpha=3, out=y.narrow(dim, 1, ne - 1))
        torch.mul(even.narrow(dim, 0, 1), 4, out=y.narrow(dim, 0, 1))
        y.add_(odd, alpha=3)
        if ne > 1:
            y.narrow(dim, 0, ne - 1).add_(even.narrow(dim, 1, ne - 1))
        y.narrow(dim, ne - 1, 1).add_(odd.narrow(dim, no - 1, 1))
    else:  # odd length: the missing last odd sample replicates the last even one
        last = even.narrow(dim, ne - 1, 1)
        y = even.clone()
        if no:
            y.narrow(dim, 0, no).add_(odd)
        y.narrow(dim, ne - 1, 1).add_(last)
        y.mul_(3)
        if no:
            y.narrow(dim, 1, no).add_(odd)
            y.narrow(dim, 0, ne - 1).add_(even.narrow(dim, 1, ne - 1))
        y.narrow(dim, 0, 1).add_(even.narrow(dim, 0, 1))
        y.narrow(dim, ne - 1, 1).add_(last)
    return y


def _stride_index(ndim: int, dim: int, start: int) -> tuple:
    index = [slice(None)] * ndim
    index[dim] = slice(start, None, 2)
    return tuple(index)


def down2(x: torch.Tensor) -> torch.Tensor:
    """Blur with [1, 3, 3, 1]/8 along H and W and decimate by 2: (..., H, W) -> ceil halves.

    Rows first: the H pass then reads whole contiguous rows, and the strided W pass runs
    on half as many of them.
    """
    y = _down_axis(x, x.dim() - 2)
    y = _down_axis(y, y.dim() - 1)
    return y.mul_(1.0 / 64.0)


def _up_axis(a: torch.Tensor, dim: int, n_out: int) -> torch.Tensor:
    """Bilinear 2× along ``dim`` to ``n_out`` in {2n-1, 2n} samples (align_corners=False).

    Output ``2i`` is ``3/4·a[i] + 1/4·a[i-1]`` and ``2i+1`` is ``3/4·a[i] + 1/4·a[i+1]``,
    edges replicated: two strided lerps straight into the output.
    """
    n = a.shape[dim]
    shape = list(a.shape)
    shape[dim] = n_out
    out = torch.empty(shape, dtype=a.dtype, device=a.device)
    even = out[_stride_index(out.dim(), dim, 0)]
    odd = out[_stride_index(out.dim(), dim, 1)]
    if n > 1:
        torch.lerp(a.narrow(dim, 1, n - 1), a.narrow(dim, 0, n - 1), 0.25, out=even.narrow(dim, 1, n - 1))
    even.narrow(dim, 0, 1).copy_(a.narrow(dim, 0, 1))
    n_odd = odd.shape[dim]
    m = min(n_odd, n - 1)
    if m > 0:
        torch.lerp(a.narrow(dim, 0, m), a.narrow(dim, 1, m), 0.25, out=odd.narrow(dim, 0, m))
    if n_odd == n:
        odd.narrow(dim, n - 1, 1).copy_(a.narrow(dim, n - 1, 1))
    return out


def up2(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear 2× upsampling of (B, C, h, w) to ``size`` = (H, W), H in {2h-1, 2h}.

    The scale is exactly 2 (not ``h/H``), so an odd-sized level maps back onto the
    pyramid geometry; borders replicate, as ``interpolate(..., mode="bilinear",
    align_corners=False)`` does. On CUDA that fused kernel does it; on the CPU, where
    it transposes NCHW through channels-last copies (3× slower here), two separable
    passes of strided lerps give the same numbers.
    """
    h, w = int(size[0]), int(size[1])
    if x.device.type == "cuda":
        return torch.ops.aten.upsample_bilinear2d(x, [h, w], False, 2.0, 2.0)
    return _up_axis(_up_axis(x, x.dim() - 1, w), x.dim() - 2, h)


def level_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """(H, W) of each pyramid level: each halves its predecessor, rounding up."""
    sizes = [(int(height), int(width))]
    for _ in range(levels - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def level_coordinates(n: int, level: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Full-resolution coordinates of the ``n`` sample centres of ``level``: 2^k i + (2^k-1)/2."""
    step = float(2**level)
    return torch.arange(n, device=device, dtype=dtype).mul_(step).add_((step - 1.0) / 2.0)


def build_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[x, down2(x), down2(down2(x)), ...] with ``levels`` entries (x itself, not a copy)."""
    pyramid = [x]
    for _ in range(levels - 1):
        pyramid.append(down2(pyramid[-1]))
    return pyramid
