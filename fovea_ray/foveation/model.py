"""The Geisler & Perry resolution model and the pyramid-level cutoffs it is rendered with.

Model (Geisler & Perry 1998; Perry & Geisler 2002): the highest spatial frequency
an observer can resolve at eccentricity ``e`` (degrees) is

    f_c(e) = e2 · ln(1 / ct0) / (alpha · (e + e2))        [cycles/degree]

with the half-resolution eccentricity ``e2`` (2.3°), the minimum contrast threshold
``ct0`` (1/64) and the spatial-frequency decay constant ``alpha`` (0.106). Eccentricity
is the pixel distance to the fixation divided by ``pixels_per_degree``. In cycles per
*pixel* this is ``f = A / (r + r2)`` with ``A = e2·ln(1/ct0)/alpha`` (cycles) and
``r2 = e2·pixels_per_degree`` (pixels), ``r`` the distance in pixels: that is the form
the renderer evaluates.

Level → cutoff mapping. Level 0 is the image itself; level ``k`` is the image blurred
and decimated ``k`` times by the centred binomial kernel [1, 3, 3, 1]/8 (Burt & Adelson
1983) and brought back to full size by ``k`` bilinear 2× upsamplings. Ignoring aliasing,
each 2× step down multiplies the spectrum by cos³(πf) and each 2× step up by cos³(πf),
with ``f`` in cycles per pixel *of that level*, so level ``k``'s amplitude transfer at
full-resolution frequency ``f`` is

    T_k(f) = Π_{j<k} cos⁶(π · 2^j · f).

Level ``k``'s cutoff ``h_k`` is its half-amplitude frequency, ``T_k(h_k) = 1/2``, found
numerically (h_1 ≈ 0.150, h_2 ≈ 0.068, then halving: 0.53-0.6 × the level's nominal
Nyquist frequency 0.5/2^k). Level 0's cutoff is the display's Nyquist frequency
``h_0 = 0.5`` cycles/pixel. For blending, every level's transfer is modelled as a
Gaussian with that half-amplitude frequency, ``R_k(f) = 2^{-(f/h_k)²}``, following
Perry & Geisler (2002), and a pixel whose cutoff ``f_c`` lies between ``h_{k+1}`` and ``h_k``
shows ``(1 - t)·level_k + t·level_{k+1}`` with Perry & Geisler's (2002)
blending weight

    t = (R_k(f_c) - 1/2) / (R_k(f_c) - R_{k+1}(f_c)),

chosen so that the blend's modelled transfer is exactly 1/2 at ``f_c``. Pixels with
``f_c >= h_0`` (the Nyquist frequency) get ``t = 0`` at level 0: they are untouched.
The continuous level of a pixel is ``k + t``.

References
----------
- W. S. Geisler and J. S. Perry (1998). A real-time foveated multiresolution system for
  low-bandwidth video communication. Proc. SPIE 3299, Human Vision and Electronic
  Imaging III, 294-305.
- J. S. Perry and W. S. Geisler (2002). Gaze-contingent real-time simulation of arbitrary
  visual fields. Proc. SPIE 4662, Human Vision and Electronic Imaging VII, 57-69.
- P. J. Burt and E. H. Adelson (1983). The Laplacian pyramid as a compact image code.
  IEEE Trans. Communications 31(4), 532-540.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

#: The display's Nyquist frequency in cycles per pixel: level 0's cutoff.
NYQUIST_CPP = 0.5

# Geisler & Perry's (1998) fitted parameters: the one home of the defaults. This module
# imports no torch, so the driver (manifest checks, configs) can read them.
#: Half-resolution eccentricity, degrees.
E2 = 2.3
#: Minimum contrast threshold.
CT0 = 1 / 64
#: Spatial-frequency decay constant.
ALPHA = 0.106
#: The display geometry the study and the demo assume, pixels per degree of visual angle.
PIXELS_PER_DEGREE = 30.0


def cutoff_cpd(eccentricity_deg, *, e2: float = E2, ct0: float = CT0, alpha: float = ALPHA):
    """Geisler & Perry's (1998) resolvable cutoff frequency in cycles/degree.

    ``f_c(e) = e2 · ln(1/ct0) / (alpha · (e + e2))``. Works on floats, numpy arrays and
    torch tensors alike.

    References
    ----------
    W. S. Geisler and J. S. Perry (1998), Proc. SPIE 3299, 294-305.
    """
    return e2 * math.log(1.0 / ct0) / (alpha * (eccentricity_deg + e2))


def eccentricity_for_cutoff(cutoff_cpd, *, e2: float = E2, ct0: float = CT0, alpha: float = ALPHA):
    """The inverse of :func:`cutoff_cpd`: the eccentricity (degrees) where ``f_c`` equals ``cutoff_cpd``.

    ``e(f) = e2 · ln(1/ct0) / (alpha · f) - e2``. Negative where the cutoff is above the
    fovea's own (``f_c(0) = ln(1/ct0)/alpha``, 39.2 cycles/degree by default): no
    eccentricity resolves that little. Works on floats, numpy arrays and torch tensors.

    Parameters
    ----------
    cutoff_cpd : float or array
        Spatial frequency in cycles per degree (> 0).
    e2, ct0, alpha : float
        The model's parameters, as in :func:`cutoff_cpd`.

    Returns
    -------
    float or array
        Eccentricity in degrees.
    """
    return e2 * math.log(1.0 / ct0) / (alpha * cutoff_cpd) - e2


def level_transfer(f, level: int) -> np.ndarray:
    """Amplitude transfer ``T_k(f) = Π_{j<k} cos⁶(π 2^j f)`` of pyramid level ``k``.

    ``f`` in cycles per full-resolution pixel. The product of the centred binomial
    [1, 3, 3, 1]/8 decimation (cos³ per step) and the bilinear 2× upsampling (cos³ per
    step), aliasing ignored. Level 0 (the image itself) transfers 1.
    """
    f = np.asarray(f, dtype=np.float64)
    out = np.ones_like(f)
    for j in range(level):
        out = out * np.cos(np.pi * (2.0**j) * f) ** 6
    return out


@functools.cache
def half_amplitude_frequencies(levels: int) -> tuple[float, ...]:
    """Cutoffs ``h_0 > h_1 > ... > h_{levels-1}`` of the pyramid levels, cycles/pixel.

    ``h_0`` is the Nyquist frequency 0.5; ``h_k`` (k >= 1) solves ``T_k(h_k) = 1/2`` on
    the first lobe ``(0, 2^-k)`` of :func:`level_transfer`, by bisection.
    """
    if levels < 1:
        raise ValueError(f"expected levels >= 1, got {levels}")
    out = [NYQUIST_CPP]
    for k in range(1, levels):
        lo, hi = 0.0, 2.0**-k  # T_k is monotone decreasing from 1 to 0 on this interval
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if level_transfer(mid, k) > 0.5:
                lo = mid
            else:
                hi = mid
        out.append(0.5 * (lo + hi))
    return tuple(out)


@dataclass(frozen=True)
class ResolutionModel:
    """Geisler & Perry's cutoff in pixel units, for one set of parameters.

    ``f(r) = a / (r + r2)`` cycles/pixel at distance ``r`` pixels from the fixation.
    """

    pixels_per_degree: float
    e2: float
    ct0: float
    alpha: float

    @property
    def a(self) -> float:
        """``e2·ln(1/ct0)/alpha``: the cutoff numerator, in cycles."""
        return self.e2 * math.log(1.0 / self.ct0) / self.alpha

    @property
    def r2(self) -> float:
        """The half-resolution eccentricity ``e2`` in pixels."""
        return self.e2 * self.pixels_per_degree

    def cutoff_cpp(self, r_px):
        """Cutoff in cycles/pixel at distance ``r_px`` pixels (float, array or tensor)."""
        return self.a / (r_px + self.r2)

    def radius_for_cutoff(self, f_cpp: float) -> float:
        """Distance in pixels where the cutoff falls to ``f_cpp`` (negative: nowhere)."""
        return self.a / f_cpp - self.r2

    def levels_to_cover(self, radius_px: float, max_levels: int) -> int:
        """Fewest levels whose coarsest cutoff is at or below ``f(radius_px)``.

        The level grids' pixel centres can lie up to ~1.5·2^(L-1) pixels past the image
        border per axis, so the radius is widened by ``2^(L+1)`` for each candidate L:
        then every level-grid sample of a covered image is covered too, which makes the
        result independent of how many levels a batch ends up with.
        """
        for levels in range(1, max_levels + 1):
            h = half_amplitude_frequencies(levels)
            if h[-1] <= self.cutoff_cpp(radius_px + 2.0 ** (levels + 1)):
                return levels
        return max_levels


def blend_fraction(f_cpp, level: int) -> np.ndarray:
    """Perry & Geisler's blend toward level ``level + 1`` at cutoff ``f_cpp`` (cycles/pixel).

    ``t_j = clamp((R_j - 1/2) / (R_j - R_{j+1}), 0, 1)`` with ``R_k(f) = 2^{-(f/h_k)²}``.
    Where ``f >= h_j`` it is exactly 0, where ``f <= h_{j+1}`` exactly 1, in between the
    weight that puts the blend's modelled half-amplitude at ``f``; the pixel's continuous
    level is ``Σ_j t_j``. Float64 numpy; the exact reference for the renderer's tables.
    """
    f = np.asarray(f_cpp, dtype=np.float64)
    h = half_amplitude_frequencies(level + 2)
    r_this = np.exp2(-((f / h[level]) ** 2))
    r_next = np.exp2(-((f / h[level + 1]) ** 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (r_this - 0.5) / (r_this - r_next)
    t = np.where(f >= h[level], 0.0, np.where(f <= h[level + 1], 1.0, t))
    return np.clip(t, 0.0, 1.0)


@dataclass(frozen=True)
class BlendTable:
    """``t_j`` tabulated against the squared distance ``d²`` (full-resolution pixels²).

    ``t_j(d²) ≈ values[clamp(floor((d² - q_lo) / step), 0, n - 1)]``: ``values[i]`` is the
    exact weight at ``d² = q_lo + i·step``, the left end of its bin. ``t_j`` rises with
    distance, so a pixel inside ``q_lo`` (cutoff at or above ``h_j``) reads exactly 0 and
    every other pixel reads at most one step's worth below the exact weight (the step
    is chosen for an error below 1e-4, see :func:`blend_table`). A lookup replaces a
    dozen transcendental passes over every pixel.
    """

    q_lo: float
    step: float
    values: np.ndarray


@functools.lru_cache(maxsize=256)
def blend_table(model: ResolutionModel, level: int, tolerance: float = 1e-4, max_entries: int = 1 << 20) -> BlendTable:
    """The :class:`BlendTable` of ``t_level`` for ``model``.

    The step is ``tolerance`` over the steepest slope of ``t`` against ``d²`` (found on a
    fine grid in distance), at most ``4^level`` px², and widened only if the table would
    exceed ``max_entries`` (then the error bound grows in proportion).
    """
    h = half_amplitude_frequencies(level + 2)
    r_lo = max(model.radius_for_cutoff(h[level]), 0.0)
    r_hi = model.radius_for_cutoff(h[level + 1])
    if r_hi <= r_lo:  # the whole plane is at or beyond level + 1: t = 1 everywhere
        return BlendTable(q_lo=0.0, step=1.0, values=np.ones(1))
    q_lo, q_hi = r_lo * r_lo, r_hi * r_hi
    r_fine = np.linspace(r_lo, r_hi, 1 << 16)
    t_fine = blend_fraction(model.cutoff_cpp(r_fine), level)
    slope = float(np.max(np.abs(np.diff(t_fine)) / np.diff(r_fine**2)))
    step = min(4.0**level, tolerance / slope) if slope > 0 else 4.0**level
    step = max(step, (q_hi - q_lo) / (max_entries - 1))
    n = int(math.ceil((q_hi - q_lo) / step)) + 1
    q = q_lo + step * np.arange(n, dtype=np.float64)
    values = blend_fraction(model.cutoff_cpp(np.sqrt(q)), level)
    if r_lo > 0:
        values[0] = 0.0  # the cutoff is h_level there: not a rounding error above 0
    values[-1] = 1.0  # q_hi itself (and beyond, by the clamp) shows level + 1
    return BlendTable(q_lo=q_lo, step=step, values=values)
