"""Load and validate a COCO instances JSON, returning a pycocotools ``COCO`` index.

pycocotools trusts its input: a missing key surfaces later as a ``KeyError`` deep inside
some loop. Here every structural problem is found up front and reported as one
:class:`~fovea_ray.errors.InputError` naming the file and what is wrong, e.g.
``instances.json: 3 annotations refer to unknown image ids (first: 999, 1000, 1001)``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from numbers import Real
from pathlib import Path  # noqa: F401 - in signatures
from typing import Any

from fovea_ray.errors import InputError
from fovea_ray.io import storage_options as _options

__all__ = ["load_coco", "read_coco_json", "validate_coco"]

_FIRST = 5  # how many offending ids an error message lists


def _first(items: list[Any]) -> str:
    head = ", ".join(str(x) for x in items[:_FIRST])
    return head + (", ..." if len(items) > _FIRST else "")


def read_coco_json(ann_file: str | Path) -> dict:
    """Read and parse the JSON file (local path or fsspec URL); InputError if unreadable."""
    import fsspec

    name = str(ann_file)
    try:
        with fsspec.open(name, "rb", **_options()) as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise InputError(f"{name}: annotation file not found") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, not a COCO annotation JSON file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read the annotation file ({exc})") from None
    if not raw.strip():
        raise InputError(f"{name}: annotation file is empty")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(
            f"{name}: expected a JSON object with 'images', 'annotations', 'categories', got a {type(data).__name__}"
        )
    return data


def _is_num(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(float(x))


def validate_coco(data: dict, name: str) -> dict:
    """Check the COCO structure; fill the optional ``iscrowd`` (0) and ``area`` (box area).

    Raises :class:`InputError` naming ``name`` for: a missing or non-list top-level key;
    records missing required keys or with bad values; duplicate ids; annotations that refer
    to unknown images or categories.
    """
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(f"{name}: missing the top-level key '{key}' (not a COCO instances file?)")
        if not isinstance(data[key], list):
            raise InputError(f"{name}: '{key}' must be a list, got {type(data[key]).__name__}")

    def check_records(key: str, required: dict[str, Any]) -> None:
        for idx, rec in enumerate(data[key]):
            if not isinstance(rec, dict):
                raise InputError(f"{name}: {key}[{idx}] is not an object")
            missing = [k for k in required if k not in rec]
            if missing:
                ident = f" (id {rec['id']})" if "id" in rec else ""
                raise InputError(f"{name}: {key}[{idx}]{ident} has no {', '.join(repr(m) for m in missing)}")
            for k, ok in required.items():
                if ok is not None and not ok(rec[k]):
                    raise InputError(f"{name}: {key}[{idx}] (id {rec.get('id')}) has an invalid '{k}': {rec[k]!r}")

    is_id = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    check_records("categories", {"id": is_id, "name": lambda v: isinstance(v, str)})
    check_records(
        "images",
        {
            "id": is_id,
            "file_name": lambda v: isinstance(v, str) and v != "",
            "width": lambda v: is_id(v) and v > 0,
            "height": lambda v: is_id(v) and v > 0,
        },
    )
    check_records(
        "annotations",
        {
            "id": is_id,
            "image_id": is_id,
            "category_id": is_id,
            "bbox": lambda v: (
                isinstance(v, list) and len(v) == 4 and all(_is_num(x) for x in v) and v[2] >= 0 and v[3] >= 0
            ),
        },
    )
    for key in ("images", "annotations", "categories"):
        ids = [r["id"] for r in data[key]]
        if len(set(ids)) != len(ids):
            seen: set[int] = set()
            dup = sorted({i for i in ids if i in seen or seen.add(i)})
            raise InputError(f"{name}: duplicate {key[:-1]} ids ({_first(dup)})")
    image_ids = {r["id"] for r in data["images"]}
    cat_ids = {r["id"] for r in data["categories"]}
    bad_img = [a["id"] for a in data["annotations"] if a["image_id"] not in image_ids]
    if bad_img:
        raise InputError(
            f"{name}: {len(bad_img)} annotations refer to unknown image ids (annotation ids: {_first(bad_img)})"
        )
    bad_cat = [a["id"] for a in data["annotations"] if a["category_id"] not in cat_ids]
    if bad_cat:
        raise InputError(
            f"{name}: {len(bad_cat)} annotations refer to unknown category ids (annotation ids: {_first(bad_cat)})"
        )
    for a in data["annotations"]:
        if "iscrowd" not in a:
            a["iscrowd"] = 0
        elif a["iscrowd"] not in (0, 1, True, False):
            raise InputError(f"{name}: annotation {a['id']} has an invalid 'iscrowd': {a['iscrowd']!r}")
        if "area" not in a:
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
        elif not _is_num(a["area"]) or a["area"] < 0:
            raise InputError(f"{name}: annotation {a['id']} has an invalid 'area': {a['area']!r}")
    return data


def load_coco(ann_file: str | Path):
    """Read, validate and index a COCO instances JSON (local path or fsspec URL).

    Returns
    -------
    pycocotools.coco.COCO
        The index (``imgs``, ``anns``, ``cats``, ``getAnnIds`` ...), built without
        pycocotools' console chatter.

    Raises
    ------
    InputError
        Naming the file and the problem (see :func:`validate_coco`).
    """
    from pycocotools.coco import COCO

    name = str(ann_file)
    data = validate_coco(read_coco_json(name), name)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
