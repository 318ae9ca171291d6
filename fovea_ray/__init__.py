"""fovea-ray: resolution specialisation in detection networks, at dataset scale.

The data flow (see README.md): COCO -> manifest (``fovea_ray.data``) -> Ray Data
extraction (``fovea_ray.pipeline``) through the foveation filter
(``fovea_ray.foveation``), Mask R-CNN (``fovea_ray.model``) and on-device taps
(``fovea_ray.taps``) -> a Zarr store (``fovea_ray.store``) -> classifier two-sample
tests (``fovea_ray.stats``) -> report (``fovea_ray.report``).
"""

__version__ = "0.1.0"
