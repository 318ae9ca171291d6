"""Pixel-level control statistics of the model's input canvas.

If a classifier can tell sharp from blurred samples from the pixels alone, a separation
found in the network's activations is partly trivial. These controls give that
classifier its features: per RGB channel, the same reductions as the taps
(:mod:`fovea_ray.taps.reductions`) plus ``hf_energy``, the mean squared 5-point discrete
Laplacian over the interior of the image. The Laplacian's energy is the classic measure
of focus and blur (Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy:
a comparative study", ICPR 2000); foveation removes exactly this high-frequency content.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from fovea_ray.names import DEFAULT_STATS, HF_ENERGY, parse_stats
from fovea_ray.taps.reductions import reduce_rows

__all__ = ["HF_ENERGY", "control_stat_names", "pixel_controls"]

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def _as_list(stats: str | Iterable[str]) -> list[str]:
    if isinstance(stats, str):
        stats = stats.replace(",", " ").split()
    return [s.strip().lower() for s in stats if s.strip()]


def control_stat_names(stats: str | Iterable[str] = DEFAULT_STATS) -> list[str]:
    """The S' statistic names of :func:`pixel_controls` for ``stats``.

    The canonical tap statistic names (:func:`fovea_ray.taps.parse_stats`) in the given
    order, with ``hf_energy`` where listed, or appended at the end when not listed.
    """
    raw = _as_list(stats)
    others = [r for r in raw if r != HF_ENERGY]
    if raw.count(HF_ENERGY) > 1:
        raise ValueError(f"statistics listed twice: {HF_ENERGY}")
    canonical = iter([spec.name for spec in parse_stats(others)] if others else [])
    names = [HF_ENERGY if r == HF_ENERGY else next(canonical) for r in raw]
    return names if HF_ENERGY in names else names + [HF_ENERGY]


def pixel_controls(images: torch.Tensor, stats: str | Iterable[str] = DEFAULT_STATS) -> torch.Tensor:
    """Per-RGB-channel statistics of ``images`` (B, 3, H, W) -> (B, 3, S') float32.

    ``images`` are float in [0, 1] (uint8 is scaled by 1/255), on any device; the result
    stays on that device. S' follows :func:`control_stat_names`. ``hf_energy`` needs
    H, W >= 3.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, 3, H, W) tensor, got {shape}")
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    elif not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1] or uint8, got dtype {images.dtype}")
    images = images.detach().float()
    batch, channels, height, width = images.shape
    names = control_stat_names(stats)
    tap_names = [n for n in names if n != HF_ENERGY]
    columns: dict[str, torch.Tensor] = {}
    if tap_names:
        reduced = reduce_rows(images.reshape(batch * channels, height * width), parse_stats(tap_names))
        for j, name in enumerate(tap_names):
            columns[name] = reduced[:, j].view(batch, channels)
    if height < 3 or width < 3:
        raise ValueError(f"hf_energy needs images of at least 3 x 3 pixels, got {height} x {width}")
    kernel = _LAPLACIAN.to(images.device).expand(channels, 1, 3, 3)
    # 'valid' convolution: the border, where any padding rule would invent pixels, is left out.
    laplacian = F.conv2d(images, kernel, groups=channels)
    columns[HF_ENERGY] = laplacian.square().mean(dim=(2, 3))
    return torch.stack([columns[n] for n in names], dim=-1)
