"""The extraction pipeline (Ray Data): manifest -> read -> model actors -> Zarr sink.

Stages, one module each: :mod:`~fovea_ray.pipeline.read` (encoded bytes),
:mod:`~fovea_ray.pipeline.actor` (decode, foveate, render, tapped forward, reduce),
:mod:`~fovea_ray.pipeline.sink` (whole-chunk writes, then done flags), and the
orchestration in :mod:`~fovea_ray.pipeline.extract`; :mod:`~fovea_ray.pipeline.anchor`
defines the anchor object's detection score.
"""

from fovea_ray.pipeline.extract import DEFAULT_LAYERS, DEFAULT_STATS, extract, manifest_checksum
from fovea_ray.pipeline.summary import ExtractSummary

__all__ = ["DEFAULT_LAYERS", "DEFAULT_STATS", "ExtractSummary", "extract", "manifest_checksum"]
