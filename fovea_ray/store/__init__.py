"""The activation store: a chunked, resumable Zarr v3 hierarchy (layout in DESIGN.md).

``open_store(path)`` reads it (sample table, layers, ``activations(layer)`` as (N, C, S),
``controls()``, ``attrs``, ``to_xarray()``); ``create_store`` and ``Store.write_chunk``
write it, one whole chunk at a time.
"""

from fovea_ray.store.config import diff_configs
from fovea_ray.store.layout import ChunkPlan
from fovea_ray.store.zarr_store import Store, create_store, open_store

__all__ = ["ChunkPlan", "Store", "create_store", "diff_configs", "open_store"]
