"""``Foveator``: the batched Geisler & Perry variable-resolution filter."""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np
import torch

from fovea_ray.foveation import blend
from fovea_ray.foveation.model import ALPHA, CT0, E2, PIXELS_PER_DEGREE, ResolutionModel, half_amplitude_frequencies

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_BACKENDS = ("auto", "torch", "triton")


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected {name} to be a positive number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"expected {name} to be a positive finite number, got {value!r}")
    return v


class Foveator:
    """Foveate image batches with the Geisler & Perry (1998, 2002) resolution model.

    Each image is sharp at its own fixation and loses resolution with eccentricity: the
    cutoff frequency ``f_c(e) = e2·ln(1/ct0) / (alpha·(e + e2))`` cycles/degree at
    eccentricity ``e`` = pixel distance / ``pixels_per_degree``. The image is rendered
    from a Gaussian (binomial) pyramid, each pixel blended between the two levels that
    bracket its cutoff with Perry & Geisler's (2002) blending weight; pixels whose cutoff
    is at or above the display's Nyquist frequency (0.5 cycles/pixel =
    ``0.5·pixels_per_degree`` cycles/degree) are returned untouched, bit for bit. Level
    ``k``'s cutoff is its half-amplitude frequency (0.5 cycles/pixel for level 0, then
    about 0.150, 0.068, 0.033, ... halving): see :mod:`fovea_ray.foveation.model` for
    the derivation and :mod:`fovea_ray.foveation.blend` for the render.

    Parameters
    ----------
    pixels_per_degree:
        Display resolution, pixels per degree of visual angle (> 0).
    e2:
        Half-resolution eccentricity in degrees (> 0; 2.3 in Geisler & Perry 1998).
    ct0:
        Minimum contrast threshold, 0 < ct0 < 1 (1/64).
    alpha:
        Spatial-frequency decay constant (> 0; 0.106).
    levels:
        Pyramid levels including the image itself. ``None`` picks, per call, the fewest
        levels whose coarsest cutoff reaches the lowest cutoff in the batch (the
        fixation's farthest image corner); pixels whose cutoff falls below the coarsest
        level's show the coarsest level. Results do not depend on the batch: extra
        levels never change an image that fewer levels already cover.
    backend:
        ``"torch"`` (any device), ``"triton"`` (CUDA, float32: the fused blend kernel in
        :mod:`fovea_ray.foveation._triton`) or ``"auto"`` (Triton on CUDA where it is
        installed, torch elsewhere). Both give the same result within float32 rounding.

    Call ``fov(images, fixations)``: ``images`` (B, C, H, W), float (values in [0, 1]
    by convention; any range works, the filter is a convex combination) or uint8, on any
    device; ``fixations`` (B, 2) as (x, y) pixels (tensor, array or nested list; they
    may lie outside the image). Returns a new tensor with the input's shape, dtype and
    device. Float16/bfloat16 are computed in float32, float64 in float64.

    References
    ----------
    W. S. Geisler and J. S. Perry (1998), Proc. SPIE 3299, 294-305. J. S. Perry and
    W. S. Geisler (2002), Proc. SPIE 4662, 57-69. P. J. Burt and E. H. Adelson (1983),
    IEEE Trans. Commun. 31(4), 532-540.

    Examples
    --------
    >>> fov = Foveator(pixels_per_degree=30.0)
    >>> out = fov(torch.rand(2, 3, 64, 64), [[10.0, 10.0], [50.0, 20.0]])
    >>> out.shape
    torch.Size([2, 3, 64, 64])
    """

    def __init__(
        self,
        pixels_per_degree: float = PIXELS_PER_DEGREE,
        e2: float = E2,
        ct0: float = CT0,
        alpha: float = ALPHA,
        levels: int | None = None,
        *,
        backend: str = "auto",
    ) -> None:
        ppd = _positive("pixels_per_degree", pixels_per_degree)
        e2 = _positive("e2", e2)
        alpha = _positive("alpha", alpha)
        ct0 = _positive("ct0", ct0)
        if ct0 >= 1:
            raise ValueError(f"expected 0 < ct0 < 1 (a contrast threshold), got {ct0!r}")
        if levels is not None:
            if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not 1 <= levels <= 32:
                raise ValueError(f"expected levels to be None or an integer in [1, 32], got {levels!r}")
            levels = int(levels)
        if backend not in _BACKENDS:
            raise ValueError(f"expected backend in {_BACKENDS}, got {backend!r}")
        self.model = ResolutionModel(pixels_per_degree=ppd, e2=e2, ct0=ct0, alpha=alpha)
        self.levels = levels
        self.backend = backend

    # -- public helpers ---------------------------------------------------------------

    @property
    def pixels_per_degree(self) -> float:
        return self.model.pixels_per_degree

    @property
    def nyquist_cpd(self) -> float:
        """The display's Nyquist frequency in cycles/degree (0.5 · pixels_per_degree)."""
        return 0.5 * self.model.pixels_per_degree

    @property
    def fovea_radius_px(self) -> float:
        """Distance from the fixation (pixels) within which the image is untouched."""
        return self.model.radius_for_cutoff(0.5)

    def params(self) -> dict[str, Any]:
        """The model parameters as a JSON-able dict; ``Foveator(**params())`` rebuilds it."""
        m = self.model
        return {
            "pixels_per_degree": m.pixels_per_degree,
            "e2": m.e2,
            "ct0": m.ct0,
            "alpha": m.alpha,
            "levels": self.levels,
        }

    def level_cutoffs_cpd(self, levels: int) -> list[float]:
        """Cutoff (half-amplitude frequency) of each pyramid level, cycles/degree."""
        return [h * self.model.pixels_per_degree for h in half_amplitude_frequencies(levels)]

    def num_levels(self, height: int, width: int, fixations) -> int:
        """Pyramid levels used for a (height, width) batch with these fixations."""
        fix = self._fixations(fixations, None)
        return self._num_levels(int(height), int(width), fix)

    def cutoff_map(self, height: int, width: int, fixations, device=None) -> torch.Tensor:
        """Geisler & Perry cutoff (cycles/degree) at every pixel centre: (B, H, W) float32."""
        height, width = self._size(height, width)
        fix = self._fixations(fixations, None)
        f = torch.as_tensor(fix, dtype=torch.float32, device=device)
        r = blend.squared_distance(f, height, width, 0).sqrt_()
        return r.add_(self.model.r2).reciprocal_().mul_(self.model.a * self.model.pixels_per_degree)

    def level_map(self, height: int, width: int, fixations, device=None) -> torch.Tensor:
        """Continuous pyramid level ``k + t`` of every pixel: (B, H, W) float32.

        0 where the pixel is untouched, ``k + t`` where it shows ``(1 - t)·level_k +
        t·level_{k+1}``, with the levels this batch would be rendered with.
        """
        height, width = self._size(height, width)
        fix = self._fixations(fixations, None)
        f = torch.as_tensor(fix, dtype=torch.float32, device=device)
        return blend.level_map(f, height, width, self.model, self._num_levels(height, width, fix))

    # -- the filter ---------------------------------------------------------------------

    def __call__(self, images: torch.Tensor, fixations) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"expected images as a torch.Tensor (B, C, H, W), got {type(images).__name__}")
        if images.dim() != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8 and images.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"expected images of dtype uint8 or floating point, got {images.dtype}")
        b, _, height, width = images.shape
        if height < 1 or width < 1:
            raise ValueError(f"expected images with H, W >= 1, got shape {tuple(images.shape)}")
        fix = self._fixations(fixations, b)
        if b == 0 or images.shape[1] == 0:
            return images.clone()
        levels = self._num_levels(height, width, fix)

        compute = torch.float64 if images.dtype == torch.float64 else torch.float32
        if images.dtype == torch.uint8:
            x = images.to(compute).div_(255.0)
        else:
            x = images.to(compute)  # no copy for float32/float64
        f = torch.as_tensor(fix, dtype=torch.float32).to(images.device, non_blocking=True)

        out = self._render(x, f, levels)
        if images.dtype == torch.uint8:
            return out.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)
        return out.to(images.dtype)

    def __repr__(self) -> str:
        p = self.params()
        return "Foveator(" + ", ".join(f"{k}={v!r}" for k, v in p.items()) + f", backend={self.backend!r})"

    # -- internals ----------------------------------------------------------------------

    def _render(self, x: torch.Tensor, f: torch.Tensor, levels: int) -> torch.Tensor:
        if self._use_triton(x):
            from fovea_ray.foveation import _triton

            try:
                return _triton.render(x, f, self.model, levels)
            except Exception as exc:  # noqa: BLE001 - a compiler problem must not stop a run
                if self.backend == "triton":
                    raise
                warnings.warn(f"Triton foveation failed ({exc}); using the torch path", RuntimeWarning, stacklevel=3)
                self.backend = "torch"
        return blend.render(x, f, self.model, levels)

    def _use_triton(self, x: torch.Tensor) -> bool:
        if self.backend == "torch":
            return False
        if self.backend == "triton":
            if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1":
                raise ValueError(
                    f"expected CUDA images for backend='triton' (or TRITON_INTERPRET=1), got {x.device.type}"
                )
            return True
        if x.device.type != "cuda" or x.dtype != torch.float32:
            return False
        from fovea_ray.foveation import _triton

        return _triton.available()

    @staticmethod
    def _size(height: Any, width: Any) -> tuple[int, int]:
        try:
            h, w = int(height), int(width)
        except (TypeError, ValueError):
            raise ValueError(f"expected integer height and width, got {height!r}, {width!r}") from None
        if h < 1 or w < 1:
            raise ValueError(f"expected height, width >= 1, got {height!r}, {width!r}")
        return h, w

    @staticmethod
    def _fixations(fixations, batch: int | None) -> np.ndarray:
        """(B, 2) float64 on the host; one small copy even from a CUDA tensor."""
        try:
            if isinstance(fixations, torch.Tensor):
                arr = fixations.detach().to("cpu", torch.float64).numpy()
            else:
                arr = np.asarray(fixations, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"expected fixations as a (B, 2) array of (x, y) pixels: {exc}") from None
        want = "(B, 2)" if batch is None else f"(B, 2) = ({batch}, 2)"
        if arr.ndim != 2 or arr.shape[1] != 2 or (batch is not None and arr.shape[0] != batch):
            raise ValueError(f"expected fixations of shape {want} as (x, y) pixels, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            bad = np.flatnonzero(~np.isfinite(arr).all(axis=1)).tolist()
            raise ValueError(f"expected finite fixations, got NaN or inf in rows {bad}")
        return arr

    def _num_levels(self, height: int, width: int, fix: np.ndarray) -> int:
        if self.levels is not None:
            return self.levels
        max_levels = max(1, math.ceil(math.log2(max(height, width)))) + 1
        if fix.shape[0] == 0:
            return max_levels
        far_x = np.maximum(np.abs(fix[:, 0]), np.abs(fix[:, 0] - (width - 1)))
        far_y = np.maximum(np.abs(fix[:, 1]), np.abs(fix[:, 1] - (height - 1)))
        radius = float(np.sqrt(far_x**2 + far_y**2).max())
        return self.model.levels_to_cover(radius, max_levels)
