"""The variable-resolution (foveation) filter: Geisler & Perry's model on a Gaussian pyramid.

- :class:`Foveator` — batched, per-image fixations, CPU and CUDA (``foveator.py``).
- :mod:`~fovea_ray.foveation.model` — the cutoff model and the level → cutoff mapping.
- :mod:`~fovea_ray.foveation.pyramid` — the centred binomial pyramid.
- :mod:`~fovea_ray.foveation.blend` — blending weights and the torch render.
- :mod:`~fovea_ray.foveation._triton` — the fused CUDA blend kernel (optional).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fovea_ray.foveation.model import cutoff_cpd, eccentricity_for_cutoff, half_amplitude_frequencies

if TYPE_CHECKING:
    from fovea_ray.foveation.foveator import Foveator

__all__ = ["Foveator", "cutoff_cpd", "eccentricity_for_cutoff", "half_amplitude_frequencies"]


def __getattr__(name: str):
    # Foveator imports torch: load it on first use, so the torch-free model (constants,
    # cutoff) can be imported by the driver without torch.
    if name == "Foveator":
        from fovea_ray.foveation.foveator import Foveator

        return Foveator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
