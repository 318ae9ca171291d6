"""The arguments that made a store, read back from it, so a store can be recomputed alone.

``extract`` records its canonical config in the store's root attributes (the manifest it
read, the weights, the layers and statistics, the chunking and the numerics); a repair
(``fovea-ray verify --repair``) reruns the extraction with exactly those, so the
recomputed chunks match the rest of the store key for key and bit for bit.
"""

from __future__ import annotations

from typing import Any

from fovea_ray.errors import InputError
from fovea_ray.store import Store

__all__ = ["rerun_arguments"]


def rerun_arguments(store: Store) -> tuple[str, dict[str, Any]]:
    """The manifest and the :func:`fovea_ray.pipeline.extract` keywords that made ``store``.

    Parameters
    ----------
    store : Store
        A store written by ``extract``.

    Returns
    -------
    manifest : str
        The manifest path or URL the store was made from.
    kwargs : dict
        ``weights``, ``arch`` or ``model``, ``layers``, ``stats``, ``chunk_size``, ``seed``,
        ``backbone_only``, ``precision`` and, where recorded, the numerics (``batch_size``,
        ``device``, ``torch_threads``).

    Raises
    ------
    InputError
        The store was made from an in-memory manifest (a DataFrame given to ``extract``)
        or holds no config: it cannot be recomputed without the caller's manifest.
    """
    attrs = store.attrs
    config = attrs.get("config")
    if not config:
        raise InputError(
            f"{store.path}: the store records no extraction config, so it cannot be recomputed from itself"
        )
    manifest = attrs.get("manifest")
    if not manifest or manifest == "<DataFrame>":
        raise InputError(
            f"{store.path}: made from an in-memory manifest, so it cannot be recomputed from itself; "
            "rerun `extract` (or fovea_ray.pipeline.extract) with that manifest and this --out"
        )
    weights = attrs.get("weights_source")
    kw: dict[str, Any] = {
        "weights": None if weights in (None, "", "random", "none") else str(weights),
        "layers": list(config["layers"]),
        "stats": list(config["stats"]),
        "chunk_size": int(config["chunk_size"]),
        "seed": int(config["seed"]),
        "backbone_only": bool(config.get("backbone_only", False)),
        "precision": str(config.get("precision", "auto")),
    }
    if config.get("model"):
        kw["model"] = str(config["model"])
    else:
        kw["arch"] = str(config.get("arch", "resnet101"))
    numerics = config.get("numerics") or {}
    if numerics.get("batch_size") is not None:
        kw["batch_size"] = int(numerics["batch_size"])
    if numerics.get("device"):
        kw["device"] = str(numerics["device"])
    if numerics.get("torch_threads") is not None:
        kw["torch_threads"] = int(numerics["torch_threads"])
    return str(manifest), kw
