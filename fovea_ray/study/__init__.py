"""The whole study in one call: prepare -> extract -> test -> report (``fovea-ray run``)."""

from fovea_ray.study.config import RunConfig, load_config

__all__ = ["RunConfig", "load_config"]
