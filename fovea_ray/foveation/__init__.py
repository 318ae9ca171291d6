"""The variable-resolution (foveation) filter: Geisler & Perry's model on a Gaussian pyramid.

- :class:`Foveator` — batched, per-image fixations, CPU and CUDA (``foveator.py``).
- :mod:`~fovea_ray.foveation.model` — the cutoff model and the level → cutoff mapping.
- :mod:`~fovea_ray.foveation.pyramid` — the centred binomial pyramid.
- :mod:`~fovea_ray.foveation.blend` — blending weights and the torch render.
- :mod:`~fovea_ray.foveation._triton` — the fused CUDA blend kernel (optional).
"""

from fovea_ray.foveation.foveator import Foveator
from fovea_ray.foveation.model import cutoff_cpd, half_amplitude_frequencies

__all__ = ["Foveator", "cutoff_cpd", "half_amplitude_frequencies"]
