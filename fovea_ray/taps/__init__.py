"""On-device taps: per-channel statistics of any set of layers in one forward pass.

- :func:`capture` — one-shot: ``{layer: (B, C, S)}`` for a batch.
- :class:`Tapper` — hooks registered once, reused across batches (the pipeline's actor).
- :func:`resolve_layers` — exact names or dot-wise globs, in network depth order.
- :func:`parse_stats` / :data:`DEFAULT_STATS` / :data:`BASIC_STATS` — statistic names.
"""

from fovea_ray.taps.layers import bottleneck_layers, resolve_layers
from fovea_ray.taps.reductions import BASIC_STATS, DEFAULT_STATS, parse_stats, reduce_rows, valid_extent
from fovea_ray.taps.tapper import TapOutput, Tapper, capture

__all__ = [
    "BASIC_STATS",
    "DEFAULT_STATS",
    "TapOutput",
    "Tapper",
    "bottleneck_layers",
    "capture",
    "parse_stats",
    "reduce_rows",
    "resolve_layers",
    "valid_extent",
]
