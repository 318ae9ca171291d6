"""The sample manifest: which image, which anchor object, which type, where the eye looks.

One row per sample (parquet). Two groups, as in the study (Gizdov & Akhtari 2023, sec. 3):
*type 1* (``label`` 1) has the anchor object at the fixation, so it is sharp; *type 0*
(``label`` 0) has it in the periphery, so it is blurred. The rules:

- **Anchor objects** are not crowd annotations, have ``area >= min_area`` (COCO's "medium"
  threshold, 32^2 px, by default), lie inside the image (at least ``border_px`` from every
  edge, so objects cut by the border are excluded), and fit the window: box area at most
  ``max_window_fraction`` of the window's area, and box sides no longer than the window's.
- **Independence:** every sample comes from a different image; an image is never reused
  across the two types.
- **Balance:** for each category, as many type-1 as type-0 samples, and as many as the data
  allows: images are assigned to categories by :func:`fovea_ray.data.balance.balanced_assignment`,
  which maximises the balanced total exactly (not first-come). ``n_per_type`` caps the total,
  spread so that the largest category is as small as possible.
- **Geometry:** the object's centre is its box centre. The window is the canvas size in source
  pixels centred on the object (so nothing is rescaled, and the rule is identical for both
  types). Type 1 fixates the object centre (eccentricity 0). Type 0 fixates a point displaced
  from it so that the object centre sits at an eccentricity drawn uniformly from ``ecc_band``
  degrees (``pixels_per_degree`` converts), in a uniformly random direction. Coordinates are
  COCO's continuous pixel coordinates; the foveator takes them as they are.
- **Determinism:** every random draw comes from ``numpy.random.default_rng([seed, ...])`` keyed
  by what it is for (an image id, a category id), and the parquet file is written with fixed
  writer options and no timestamps: the same inputs and seed give the same bytes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fovea_ray.errors import InputError
from fovea_ray.foveation.model import PIXELS_PER_DEGREE, cutoff_cpd, eccentricity_for_cutoff
from fovea_ray.io import storage_options as _options
from fovea_ray.names import MAX_CANVAS

__all__ = ["MANIFEST_COLUMNS", "build_manifest", "read_manifest", "summary_path", "write_manifest"]

#: Column -> pyarrow type name, in file order.
MANIFEST_COLUMNS: dict[str, str] = {
    "sample": "int64",
    "image_id": "int64",
    "file_name": "string",
    "image_uri": "string",
    "image_width": "int64",
    "image_height": "int64",
    "ann_id": "int64",
    "category_id": "int64",
    "category_name": "string",
    "bbox": "list<double>",
    "label": "int8",
    "fixation_xy": "list<double>",
    "eccentricity_deg": "double",
    "window_xywh": "list<int64>",
    "canvas": "list<int64>",
    "pixels_per_degree": "double",
}
_REQUIRED = [c for c in MANIFEST_COLUMNS if c != "category_name"]
_META_KEY = b"fovea_ray"
_FIRST = 5

# Salts keep the random streams for different purposes independent of each other.
_SALT_ANCHOR, _SALT_SPLIT, _SALT_ORDER = 0xA2C, 0x5B1, 0x0D3


def _arrow_schema():
    import pyarrow as pa

    types = {
        "int64": pa.int64(),
        "int8": pa.int8(),
        "double": pa.float64(),
        "string": pa.string(),
        "list<double>": pa.list_(pa.float64()),
        "list<int64>": pa.list_(pa.int64()),
    }
    return pa.schema([(name, types[t]) for name, t in MANIFEST_COLUMNS.items()])


def summary_path(manifest_path: str | os.PathLike) -> Path | str:
    """Where the summary JSON of a manifest goes: ``m.parquet`` -> ``m.summary.json``.

    A local path gives a :class:`~pathlib.Path`, a URL a string (a ``Path`` would mangle it).
    """
    from fovea_ray.io import is_url, with_suffix_name

    out = with_suffix_name(manifest_path, ".summary.json")
    return out if is_url(out) else Path(out)


# -- image root ---------------------------------------------------------------------------


def _image_root(images: str | os.PathLike):
    """(filesystem, root path inside it, is_local) for a local folder or an fsspec URL."""
    import fsspec

    name = os.fspath(images)
    try:
        fs, root = fsspec.core.url_to_fs(name, **_options())
    except (ImportError, ValueError) as exc:
        raise InputError(f"{name}: cannot open the image root ({exc})") from None
    try:
        exists, is_dir = fs.exists(root), fs.isdir(root)
    except Exception as exc:  # noqa: BLE001 - remote filesystems raise their own errors
        raise InputError(f"{name}: cannot access the image root ({type(exc).__name__}: {exc})") from None
    if not exists:
        raise InputError(f"{name}: image root does not exist")
    if not is_dir:
        raise InputError(f"{name}: image root is not a directory")
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    return fs, root.rstrip("/"), local


def _image_uris(images: str | os.PathLike, file_names: Sequence[str]) -> tuple[list[str], list[bool]]:
    """Full URI of every file name under the root, and whether it exists (one listing)."""
    fs, root, local = _image_root(images)
    if local:
        base = os.path.abspath(root)
        present = set()
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            present.update(f if rel == "." else os.path.join(rel, f).replace(os.sep, "/") for f in files)
        uris = [os.path.join(base, f) for f in file_names]
    else:
        listed = fs.find(root)
        prefix = root + "/"
        present = {p[len(prefix) :] for p in listed if p.startswith(prefix)}
        uris = [fs.unstrip_protocol(f"{root}/{f}") for f in file_names]
    return uris, [f.lstrip("/") in present for f in file_names]


# -- eligibility --------------------------------------------------------------------------


def _eligibility(
    coco,
    window_hw: tuple[int, int],
    *,
    min_area: float,
    max_window_fraction: float,
    border_px: float,
    allowed: set[int],
) -> tuple[dict[int, dict[int, list[int]]], dict[str, int]]:
    """image id -> {category id -> eligible annotation ids}, and counts of rejections by reason."""
    wh, ww = window_hw
    reasons = {"category_excluded": 0, "crowd": 0, "too_small": 0, "not_inside_image": 0, "too_large_for_window": 0}
    eligible: dict[int, dict[int, list[int]]] = {}
    for ann in sorted(coco.anns.values(), key=lambda a: a["id"]):
        img = coco.imgs[ann["image_id"]]
        x, y, w, h = (float(v) for v in ann["bbox"])
        if ann["category_id"] not in allowed:
            reasons["category_excluded"] += 1
        elif ann.get("iscrowd", 0):
            reasons["crowd"] += 1
        elif float(ann["area"]) < min_area or w <= 0 or h <= 0:
            reasons["too_small"] += 1
        elif x < border_px or y < border_px or x + w > img["width"] - border_px or y + h > img["height"] - border_px:
            reasons["not_inside_image"] += 1
        elif w * h > max_window_fraction * ww * wh or w > ww or h > wh:
            reasons["too_large_for_window"] += 1
        else:
            eligible.setdefault(img["id"], {}).setdefault(ann["category_id"], []).append(ann["id"])
    return eligible, reasons


def _resolve_categories(coco, categories: Sequence[str | int] | None, ann_file: str) -> set[int]:
    all_ids = sorted(coco.cats)
    if not categories:
        return set(all_ids)
    by_name = {c["name"].lower(): c["id"] for c in coco.cats.values()}
    chosen, unknown = set(), []
    for item in categories:
        for tok in str(item).split(",") if not isinstance(item, int) else [item]:
            tok = tok.strip() if isinstance(tok, str) else tok
            if tok == "":
                continue
            if isinstance(tok, int) or tok.lstrip("-").isdigit():
                cid = int(tok)
                (chosen.add(cid) if cid in coco.cats else unknown.append(str(tok)))
            elif tok.lower() in by_name:
                chosen.add(by_name[tok.lower()])
            else:
                unknown.append(tok)
    if unknown:
        raise InputError(
            f"{ann_file}: unknown categories {', '.join(unknown[:_FIRST])} "
            f"(known: {', '.join(sorted(by_name)[:_FIRST])}, ...)"
        )
    return chosen


# -- the builder --------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestOptions:
    """The sample design, validated: :func:`build_manifest`'s options, canonical."""

    canvas: tuple[int, int]  # (H, W), px
    pixels_per_degree: float
    ecc_band: tuple[float, float]  # degrees
    min_area: float
    max_window_fraction: float
    border_px: float
    n_per_type: int | None
    seed: int

    @classmethod
    def validated(
        cls, canvas, pixels_per_degree, ecc_band, min_area, max_window_fraction, border_px, n_per_type, seed
    ) -> ManifestOptions:
        """Check the options; a bad one is a one-line :class:`InputError` naming it."""
        if isinstance(canvas, (int, np.integer)):
            canvas = (int(canvas), int(canvas))
        canvas = tuple(int(v) for v in canvas)
        if len(canvas) != 2 or min(canvas) < 8 or max(canvas) > MAX_CANVAS:
            raise InputError(f"canvas must be a size in 8..{MAX_CANVAS} px or (H, W) of such sizes, got {canvas}")
        pixels_per_degree = float(pixels_per_degree)
        if not (math.isfinite(pixels_per_degree) and pixels_per_degree > 0):
            raise InputError(f"pixels_per_degree must be positive, got {pixels_per_degree}")
        lo, hi = (float(v) for v in ecc_band)
        if not (0 <= lo <= hi and hi > 0 and math.isfinite(hi)):
            raise InputError(f"ecc_band must be 0 <= LO <= HI degrees with HI > 0, got {tuple(ecc_band)}")
        # Type 0 must actually be blurred: below its band's lower edge the Geisler-Perry cutoff
        # (default foveation parameters) must fall under the display's Nyquist frequency.
        nyquist = pixels_per_degree / 2.0
        f_lo = float(cutoff_cpd(lo))
        if f_lo >= nyquist:
            raise InputError(
                f"ecc_band {lo:g}-{hi:g} deg at {pixels_per_degree:g} px/deg leaves type-0 objects unblurred: the "
                f"cutoff at {lo:g} deg is {f_lo:.1f} cycles/deg, at or above the display's Nyquist {nyquist:g}; "
                f"use a band above {eccentricity_for_cutoff(nyquist):.1f} deg (or more pixels per degree)"
            )
        if min_area < 0 or not 0 < max_window_fraction <= 1 or border_px < 0:
            raise InputError("need min_area >= 0, 0 < max_window_fraction <= 1 and border_px >= 0")
        if n_per_type is not None and n_per_type < 1:
            raise InputError(f"n_per_type must be >= 1, got {n_per_type}")
        return cls(canvas, pixels_per_degree, (lo, hi), min_area, max_window_fraction, border_px, n_per_type, int(seed))


@dataclass(frozen=True)
class Candidates:
    """What the data offers: eligible anchors on images that exist, and why others were not."""

    eligible: dict[int, dict[int, list[int]]]  # image id -> {category id -> annotation ids}, images on disk
    reasons: dict[str, int]  # rejected annotations by reason
    uri_of: dict[int, str]
    images_listed: int
    missing: list[str]  # file names listed in the annotations but absent
    n_eligible_anns: int  # before dropping missing images
    dropped_missing: int  # eligible images whose file is missing


def _candidates(coco, images: str | os.PathLike, allowed: set[int], opts: ManifestOptions) -> Candidates:
    """The eligible anchors on images present under the root (one listing of the root)."""
    img_ids = sorted(coco.imgs)
    file_names = [coco.imgs[i]["file_name"] for i in img_ids]
    uris, present = _image_uris(images, file_names)
    present_ids = {i for i, ok in zip(img_ids, present) if ok}
    eligible, reasons = _eligibility(
        coco,
        opts.canvas,
        min_area=opts.min_area,
        max_window_fraction=opts.max_window_fraction,
        border_px=opts.border_px,
        allowed=allowed,
    )
    return Candidates(
        eligible={i: cats for i, cats in eligible.items() if i in present_ids},
        reasons=reasons,
        uri_of=dict(zip(img_ids, uris)),
        images_listed=len(img_ids),
        missing=[fn for fn, ok in zip(file_names, present) if not ok],
        n_eligible_anns=sum(len(v) for cats in eligible.values() for v in cats.values()),
        dropped_missing=sum(1 for i in eligible if i not in present_ids),
    )


def _split_types(assignment: dict[int, int], seed: int) -> dict[int, int]:
    """image id -> label: per category, a seeded half of its images gives type 1, the rest type 0."""
    label_of: dict[int, int] = {}
    per_cat: dict[int, list[int]] = {}
    for img_id, cat in assignment.items():
        per_cat.setdefault(int(cat), []).append(int(img_id))
    for cat, ims in per_cat.items():
        ims = sorted(ims)
        order = np.random.default_rng([seed, _SALT_SPLIT, cat]).permutation(len(ims))
        for rank, j in enumerate(order):
            label_of[ims[j]] = 1 if rank < len(ims) // 2 else 0
    return label_of


def _sample_row(coco, img_id: int, cat: int, label: int, cands: Candidates, opts: ManifestOptions) -> dict:
    """One sample: its anchor object, fixation and window (the geometry rules of the module docstring)."""
    hc, wc = opts.canvas
    ppd = opts.pixels_per_degree
    img = coco.imgs[img_id]
    rng = np.random.default_rng([opts.seed, _SALT_ANCHOR, img_id])
    anns = sorted(cands.eligible[img_id][cat])
    ann = coco.anns[anns[int(rng.integers(len(anns)))]]
    ecc_draw = float(rng.uniform(opts.ecc_band[0], opts.ecc_band[1]))
    theta = float(rng.uniform(0.0, 2.0 * math.pi))
    x, y, w, h = (float(v) for v in ann["bbox"])
    cx, cy = x + w / 2.0, y + h / 2.0
    if label == 1:
        fx, fy = cx, cy
    else:
        r = ecc_draw * ppd
        fx, fy = cx - r * math.cos(theta), cy - r * math.sin(theta)
    wx, wy = math.floor(cx - wc / 2.0 + 0.5), math.floor(cy - hc / 2.0 + 0.5)
    return {
        "image_id": int(img_id),
        "file_name": img["file_name"],
        "image_uri": cands.uri_of[img_id],
        "image_width": int(img["width"]),
        "image_height": int(img["height"]),
        "ann_id": int(ann["id"]),
        "category_id": cat,
        "category_name": coco.cats[cat]["name"],
        "bbox": [x, y, w, h],
        "label": label,
        "fixation_xy": [fx, fy],
        "eccentricity_deg": math.hypot(fx - cx, fy - cy) / ppd,
        "window_xywh": [int(wx), int(wy), int(wc), int(hc)],
        "canvas": [int(hc), int(wc)],
        "pixels_per_degree": ppd,
    }


def _table(rows: list[dict], seed: int) -> pd.DataFrame:
    """The rows in a seeded order, numbered by ``sample``, with the file's dtypes."""
    order = np.random.default_rng([seed, _SALT_ORDER]).permutation(len(rows))
    df = pd.DataFrame([rows[j] for j in order], columns=[c for c in MANIFEST_COLUMNS if c != "sample"])
    df.insert(0, "sample", np.arange(len(df), dtype=np.int64))
    return df.astype(
        {
            "sample": "int64",
            "image_id": "int64",
            "image_width": "int64",
            "image_height": "int64",
            "ann_id": "int64",
            "category_id": "int64",
            "label": "int8",
            "eccentricity_deg": "float64",
            "pixels_per_degree": "float64",
        }
    )


def _summary(df: pd.DataFrame, coco, allowed: set[int], cands: Candidates, result, greedy, n_per_type) -> dict:
    """The counts a reader checks the design by: per category and type, rejections, missing images."""
    cats_summary = []
    for cid in sorted(allowed):
        n_img = sum(1 for cats in cands.eligible.values() if cid in cats)
        t1 = int(((df["category_id"] == cid) & (df["label"] == 1)).sum())
        t0 = int(((df["category_id"] == cid) & (df["label"] == 0)).sum())
        if n_img or t1 or t0:
            cats_summary.append(
                {"id": int(cid), "name": coco.cats[cid]["name"], "eligible_images": n_img, "type1": t1, "type0": t0}
            )
    return {
        "total": int(len(df)),
        "per_type": {"1": int((df["label"] == 1).sum()), "0": int((df["label"] == 0).sum())},
        "n_categories": int(sum(1 for c in cats_summary if c["type1"] > 0)),
        "optimum_total": int(result.optimum),
        "optimality": result.certified_by,
        "first_come_total": int(greedy.total),
        "n_per_type_requested": n_per_type,
        "images_listed": cands.images_listed,
        "images_missing": {"count": len(cands.missing), "first": cands.missing[:_FIRST]},
        "eligible_images": len(cands.eligible),
        "annotations": {
            "total": len(coco.anns),
            "eligible": cands.n_eligible_anns,
            "eligible_but_image_missing": cands.dropped_missing,
            "rejected": cands.reasons,
        },
        "categories": cats_summary,
    }


def build_manifest(
    ann_file: str | os.PathLike,
    images: str | os.PathLike,
    *,
    n_per_type: int | None = None,
    seed: int = 0,
    canvas: int | tuple[int, int] = 640,
    pixels_per_degree: float = PIXELS_PER_DEGREE,
    categories: Sequence[str | int] | None = None,
    ecc_band: tuple[float, float] = (8.0, 12.0),
    min_area: float = 32.0**2,
    max_window_fraction: float = 0.25,
    border_px: float = 1.0,
) -> pd.DataFrame:
    """Build the type-1/type-0 manifest from a COCO instances file and an image root.

    Parameters
    ----------
    ann_file:
        COCO instances JSON (local path or fsspec URL).
    images:
        The image root (local folder or fsspec URL); ``file_name`` is relative to it.
    n_per_type:
        Cap on the samples per type (pairs); ``None`` takes all the data allows.
    seed:
        Seeds every random choice (anchor object, type split, eccentricity, direction, order).
    canvas:
        The model's canvas, px (int or (H, W)); the window is this size in source pixels.
    pixels_per_degree:
        Converts eccentricities (degrees) to pixels; must match the foveator's.
    categories:
        Restrict to these category names or ids (``None``: all).
    ecc_band:
        (low, high) eccentricity of type-0 object centres, degrees. The default (8-12 deg
        at 30 px/deg) puts the object where the Geisler-Perry cutoff (7.3-6.4 cycles/deg)
        is about half the display's Nyquist frequency, well inside the images' own
        range of eccentricities when fixating their centre.
    min_area, max_window_fraction, border_px:
        Anchor eligibility (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        One row per sample, columns :data:`MANIFEST_COLUMNS`, ordered by a seeded shuffle and
        numbered by ``sample``. ``df.attrs["config"]`` holds the build configuration and
        ``df.attrs["summary"]`` the counts (per category and type, rejections, missing images,
        the optimum and the first-come baseline).

    Raises
    ------
    InputError
        For unreadable or invalid annotations, a missing image root, unknown categories, bad
        options, or when no sample can be built.
    """
    from fovea_ray import __version__
    from fovea_ray.data.balance import balanced_assignment, greedy_assignment
    from fovea_ray.data.coco import load_coco

    # 1. Validate the options; read the annotations and list the images.
    ann_name = os.fspath(ann_file)
    opts = ManifestOptions.validated(
        canvas, pixels_per_degree, ecc_band, min_area, max_window_fraction, border_px, n_per_type, seed
    )
    coco = load_coco(ann_name)
    allowed = _resolve_categories(coco, categories, ann_name)
    cands = _candidates(coco, images, allowed, opts)

    # 2. Assign images to categories (the balanced optimum), then split each category's types.
    by_image = {i: sorted(cats) for i, cats in cands.eligible.items()}
    result = balanced_assignment(by_image, max_pairs=n_per_type, seed=opts.seed)
    label_of = _split_types(result.assignment, opts.seed)

    # 3. One row per assigned image, in a seeded order.
    rows = [
        _sample_row(coco, img_id, int(result.assignment[img_id]), label_of[img_id], cands, opts)
        for img_id in sorted(result.assignment)
    ]
    if not rows:
        why = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in cands.reasons.items() if v)
        raise InputError(
            f"{ann_name}: no balanced sample can be built ({len(coco.anns)} annotations, "
            f"{cands.n_eligible_anns} eligible anchors in {len(cands.eligible)} images on disk; "
            f"rejected: {why or 'none'})"
        )
    df = _table(rows, opts.seed)

    # 4. Record how it was built and what it holds.
    hc, wc = opts.canvas
    df.attrs["config"] = {
        "fovea_ray_version": __version__,
        "ann_file": ann_name,
        "images": os.fspath(images),
        "n_per_type": n_per_type,
        "seed": opts.seed,
        "canvas": [int(hc), int(wc)],
        "pixels_per_degree": opts.pixels_per_degree,
        "categories": sorted(allowed) if categories else None,
        "ecc_band": list(opts.ecc_band),
        "min_area": float(min_area),
        "max_window_fraction": float(max_window_fraction),
        "border_px": float(border_px),
        "window_rule": "canvas-sized window in source pixels centred on the anchor's box centre",
    }
    df.attrs["summary"] = _summary(df, coco, allowed, cands, result, greedy_assignment(by_image), n_per_type)
    return df


# -- files --------------------------------------------------------------------------------


def write_manifest(
    df: pd.DataFrame, path: str | os.PathLike, *, config: dict | None = None, write_summary: bool = True
) -> Path | str:
    """Write the manifest as parquet (a local path or an fsspec URL), byte-for-byte reproducibly.

    Returns the path: a :class:`~pathlib.Path` for a local file, the URL string otherwise.

    The build configuration (``config``, default ``df.attrs["config"]``) is stored as JSON in
    the file's key-value metadata under ``fovea_ray``. No pandas metadata, no timestamps,
    fixed compression and statistics settings. The summary (``df.attrs["summary"]``) is
    written next to it as ``<name>.summary.json`` (:func:`summary_path`).
    """
    import io as _io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from fovea_ray import io as fio

    path = os.fspath(path)
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"manifest lacks columns {missing}")
    data = df.copy()
    if "category_name" not in data.columns:
        data["category_name"] = ""
    arrays = []
    schema = _arrow_schema()
    for field in schema:
        col = data[field.name]
        if pa.types.is_list(field.type):
            values = [list(map(float if pa.types.is_floating(field.type.value_type) else int, v)) for v in col]
            arrays.append(pa.array(values, type=field.type))
        else:
            arrays.append(
                pa.array(col.to_numpy(), type=field.type)
                if field.type != pa.string()
                else pa.array([str(v) for v in col], type=pa.string())
            )
    cfg = config if config is not None else data.attrs.get("config", {})
    meta = {_META_KEY: json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()}
    table = pa.Table.from_arrays(arrays, schema=schema.with_metadata(meta))
    buf = _io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        compression_level=3,
        use_dictionary=True,
        write_statistics=True,
        row_group_size=1 << 20,
    )
    path = fio.write_bytes(path, buf.getvalue())
    summary = data.attrs.get("summary")
    if write_summary and summary is not None:
        name = path.rstrip("/").rsplit("/", 1)[-1] if fio.is_url(path) else Path(path).name
        fio.write_text(summary_path(path), json.dumps({"manifest": name, **summary}, indent=2, sort_keys=False) + "\n")
    return path if fio.is_url(path) else Path(path)


def read_manifest(path: str | os.PathLike, *, storage_options: dict | None = None) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`; ``df.attrs["config"]`` holds its config.

    Raises
    ------
    InputError
        If the file is missing or unreadable, or lacks manifest columns, naming the file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fovea_ray import io as fio

    name = os.fspath(path)
    try:
        if fio.is_url(name):  # through fsspec, with fovea-ray's storage options (not pyarrow's own S3)
            table = pq.read_table(pa.BufferReader(fio.read_bytes(name, options=storage_options)))
        else:
            table = pq.read_table(name)
    except FileNotFoundError:
        raise InputError(f"{name}: manifest not found") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise InputError(f"{name}: not a readable parquet manifest ({type(exc).__name__}: {exc})") from None
    missing = [c for c in _REQUIRED if c not in table.column_names]
    if missing:
        raise InputError(f"{name}: not a fovea-ray manifest (missing columns: {', '.join(missing)})")
    df = table.to_pandas()
    for col in ("bbox", "fixation_xy", "window_xywh", "canvas"):
        lengths = {len(v) for v in df[col]}
        want = {"bbox": 4, "fixation_xy": 2, "window_xywh": 4, "canvas": 2}[col]
        if lengths - {want}:
            raise InputError(f"{name}: column '{col}' must hold {want} values per row")
    if not set(np.unique(df["label"].to_numpy())) <= {0, 1}:
        raise InputError(f"{name}: column 'label' must be 0 or 1")
    meta = table.schema.metadata or {}
    try:
        df.attrs["config"] = json.loads(meta[_META_KEY]) if _META_KEY in meta else {}
    except json.JSONDecodeError:
        df.attrs["config"] = {}
    return df
