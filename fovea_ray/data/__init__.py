"""Sample design: COCO loading, the type-1/type-0 manifest, rendering, and the synthetic set.

Modules, in data-flow order:

- :mod:`fovea_ray.data.synthetic` -- a seeded synthetic mini-COCO (the embedded demo dataset);
- :mod:`fovea_ray.data.synthetic_imagefolder` -- a seeded synthetic ImageFolder (``fovea-ray pretrain``'s tests);
- :mod:`fovea_ray.data.coco` -- loading and validating COCO instances JSON (pycocotools);
- :mod:`fovea_ray.data.balance` -- the optimal balanced assignment of images to categories;
- :mod:`fovea_ray.data.manifest` -- anchor eligibility, geometry, the parquet manifest;
- :mod:`fovea_ray.data.render` -- decoding bytes and rendering foveated, windowed canvases;
- :mod:`fovea_ray.data.preview` -- a PNG of type-1/type-0 pairs as the model will see them.

Submodules are imported lazily so that ``import fovea_ray.data`` stays cheap.
"""

from __future__ import annotations

__all__ = ["balance", "coco", "manifest", "preview", "render", "synthetic", "synthetic_imagefolder"]
