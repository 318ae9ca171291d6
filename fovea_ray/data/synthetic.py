"""A seeded synthetic mini-COCO: textured shapes on textured backgrounds.

It is the dataset of the embedded demo (``fovea-ray run`` with no arguments) and of the
tests, because no dataset can be downloaded there. It is a real COCO-format dataset:
``ROOT/images/*.jpg`` and ``ROOT/instances.json`` with ``images``, ``annotations``
(bbox, polygon ``segmentation``, ``area``, ``iscrowd=0``) and ``categories``; pycocotools
loads it and the manifest builder uses it unchanged.

Each object is filled with a high-contrast texture (stripes, checkers, block noise or
concentric rings) with sharp edges, so foveation visibly changes it: the blur removes
exactly the spatial frequencies these textures carry. Backgrounds carry low-frequency
colour variation, a faint grating and fine noise, so the canvas is never flat.

Every image is drawn from its own generator, ``numpy.random.default_rng([seed, index])``,
so image ``i`` is the same whatever ``n_images`` is, and the output is byte-identical for
the same arguments.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CATEGORIES", "make_synthetic_coco"]

#: (id, name, supercategory) of the synthetic object categories.
CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (1, "disc", "round"),
    (2, "square", "polygon"),
    (3, "triangle", "polygon"),
    (4, "star", "symbol"),
    (5, "ring", "round"),
    (6, "cross", "symbol"),
    (7, "hexagon", "polygon"),
    (8, "arrow", "symbol"),
)

_SUPERSAMPLE = 4  # anti-aliased object edges: draw the mask at 4x, box-filter down


@dataclass(frozen=True)
class _Shape:
    """One object's outline, in image pixels (float)."""

    rings: list[np.ndarray]  # (K, 2) closed outlines; the 2nd ring of a "ring" is its hole
    polygon: np.ndarray  # the single COCO polygon (a keyhole for shapes with a hole)


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _outline(name: str, size: float, angle: float) -> list[np.ndarray]:
    """Unit-centred outline(s) of a shape whose extent is about ``size`` pixels."""
    r = size / 2
    if name == "disc":
        rings = [_regular(48, r, 0.0)]
    elif name == "square":
        rings = [_regular(4, r, np.pi / 4)]
    elif name == "triangle":
        rings = [_regular(3, r, -np.pi / 2)]
    elif name == "hexagon":
        rings = [_regular(6, r, 0.0)]
    elif name == "star":
        outer = _regular(5, r, -np.pi / 2)
        inner = _regular(5, 0.45 * r, -np.pi / 2 + np.pi / 5)
        rings = [np.stack([outer, inner], axis=1).reshape(-1, 2)]
    elif name == "ring":
        rings = [_regular(48, r, 0.0), _regular(48, 0.55 * r, 0.0)]
    elif name == "cross":
        a, b = r, 0.36 * r
        rings = [
            np.array(
                [
                    (-b, -a),
                    (b, -a),
                    (b, -b),
                    (a, -b),
                    (a, b),
                    (b, b),
                    (b, a),
                    (-b, a),
                    (-b, b),
                    (-a, b),
                    (-a, -b),
                    (-b, -b),
                ],
                dtype=float,
            )
        ]
    elif name == "arrow":
        a = r
        rings = [
            np.array(
                [
                    (-a, -0.3 * a),
                    (0.1 * a, -0.3 * a),
                    (0.1 * a, -0.75 * a),
                    (a, 0.0),
                    (0.1 * a, 0.75 * a),
                    (0.1 * a, 0.3 * a),
                    (-a, 0.3 * a),
                ],
                dtype=float,
            )
        ]
    else:  # pragma: no cover - CATEGORIES is closed
        raise ValueError(f"unknown synthetic shape {name!r}")
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return [ring @ rot.T for ring in rings]


def _keyhole(rings: list[np.ndarray]) -> np.ndarray:
    """One COCO polygon for an outline with an optional hole (outer, bridge, reversed inner)."""
    if len(rings) == 1:
        return rings[0]
    outer, inner = rings
    # Walking the outer ring, then the inner ring the other way round from the nearest
    # vertex, encloses the annulus; the zero-width bridge adds no area.
    inner = inner[::-1]
    return np.concatenate([outer, outer[:1], inner, inner[:1]], axis=0)


def _shoelace(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-frequency colour field + faint grating + fine noise, float32 (H, W, 3) in [0, 1]."""
    gh, gw = rng.integers(3, 8, size=2)
    coarse = rng.random((gh, gw, 3))
    # Pull the colours halfway to grey: varied but not louder than the objects.
    coarse = (0.5 * coarse + 0.5 * coarse.mean(axis=2, keepdims=True)) * 0.7 + 0.15
    coarse = coarse * 255
    field = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32) / 255
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(6, 24)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grating = np.sin(2 * np.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)
    img = field + 0.06 * grating[..., None] + rng.normal(0, 0.03, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 1)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A sharp-edged two-colour texture (H, W, 3) float32: stripes, checkers, blocks or rings."""
    kind = rng.integers(0, 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    period = rng.uniform(4, 12)
    if kind == 0:  # stripes
        t = (np.floor(u / (period / 2)) % 2).astype(np.float32)
    elif kind == 1:  # checkers
        t = ((np.floor(u / (period / 2)) + np.floor(v / (period / 2))) % 2).astype(np.float32)
    elif kind == 2:  # block noise
        cell = int(rng.integers(2, 5))
        blocks = rng.random((h // cell + 1, w // cell + 1)) > 0.5
        t = np.repeat(np.repeat(blocks, cell, 0), cell, 1)[:h, :w].astype(np.float32)
    else:  # concentric rings around the object's centre
        rr = np.hypot(xx - w / 2, yy - h / 2)
        t = (np.floor(rr / (period / 2)) % 2).astype(np.float32)
    c1 = rng.uniform(0.0, 0.45, 3)
    c2 = rng.uniform(0.55, 1.0, 3)
    if rng.random() < 0.5:
        c1, c2 = c2, c1
    return (c1 * (1 - t[..., None]) + c2 * t[..., None]).astype(np.float32)


def _mask(rings: list[np.ndarray], x0: int, y0: int, h: int, w: int) -> np.ndarray:
    """Anti-aliased coverage (H, W) float32 of the outline inside the box at (x0, y0)."""
    s = _SUPERSAMPLE
    im = Image.new("L", (w * s, h * s), 0)
    draw = ImageDraw.Draw(im)
    for k, ring in enumerate(rings):
        pts = [((px - x0) * s, (py - y0) * s) for px, py in ring]
        draw.polygon(pts, fill=255 if k == 0 else 0)
    return np.asarray(im.reduce(s), np.float32) / 255


def _draw_image(
    rng: np.random.Generator, h: int, w: int, objects: tuple[int, int], size_range: tuple[float, float]
) -> tuple[np.ndarray, list[dict]]:
    img = _background(rng, h, w)
    n_obj = int(rng.integers(objects[0], objects[1] + 1))
    boxes: list[tuple[float, float, float, float]] = []
    anns: list[dict] = []
    side = min(h, w)
    for _ in range(n_obj):
        for _try in range(30):
            cat_id, name, _sup = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            size = rng.uniform(*size_range) * side
            rings = _outline(name, size, rng.uniform(0, 2 * np.pi))
            lo = np.min(np.concatenate(rings), axis=0)
            hi = np.max(np.concatenate(rings), axis=0)
            ext = hi - lo
            margin = 3.0
            if ext[0] + 2 * margin >= w or ext[1] + 2 * margin >= h:
                continue
            cx = rng.uniform(margin - lo[0], w - margin - hi[0])
            cy = rng.uniform(margin - lo[1], h - margin - hi[1])
            bx, by = cx + lo[0], cy + lo[1]
            box = (bx, by, float(ext[0]), float(ext[1]))
            if any(
                bx < ox + ow + 4 and ox < bx + box[2] + 4 and by < oy + oh + 4 and oy < by + box[3] + 4
                for ox, oy, ow, oh in boxes
            ):
                continue  # keep objects apart: each annotation's mask is then exact
            rings = [ring + (cx, cy) for ring in rings]
            x0, y0 = int(math.floor(bx)), int(math.floor(by))
            x1, y1 = int(math.ceil(bx + box[2])) + 1, int(math.ceil(by + box[3])) + 1
            alpha = _mask(rings, x0, y0, y1 - y0, x1 - x0)[..., None]
            tex = _texture(rng, y1 - y0, x1 - x0)
            region = img[y0:y1, x0:x1]
            img[y0:y1, x0:x1] = region * (1 - alpha) + tex * alpha
            poly = _keyhole(rings)
            boxes.append(box)
            anns.append(
                {
                    "category_id": cat_id,
                    "bbox": [round(v, 2) for v in box],
                    "segmentation": [[round(float(v), 2) for v in poly.reshape(-1)]],
                    "area": round(_shoelace(poly), 2),
                    "iscrowd": 0,
                }
            )
            break
    return img, anns


def make_synthetic_coco(
    root: str | Path,
    n_images: int,
    seed: int,
    *,
    image_size: int | tuple[int, int] = 320,
    objects_per_image: tuple[int, int] = (1, 3),
    object_size: tuple[float, float] = (0.2, 0.38),
    jpeg_quality: int = 92,
) -> Path:
    """Write a seeded synthetic COCO-format dataset and return ``root``.

    Parameters
    ----------
    root:
        Output folder; ``root/images/000000.jpg ...`` and ``root/instances.json`` are written.
    n_images:
        Number of images (>= 1).
    seed:
        Seed; image ``i`` is drawn from ``numpy.random.default_rng([seed, i])``.
    image_size:
        Side in pixels, or ``(height, width)``.
    objects_per_image:
        Inclusive range of objects per image (non-overlapping; at least one is always placed).
    object_size:
        Range of an object's extent as a fraction of the image's shorter side. The defaults
        (64-122 px at 320 px) pass the manifest's default anchor rules (area >= 32^2, at most
        a quarter of a 256 px window) for almost every object.
    jpeg_quality:
        JPEG quality of the written images.

    Returns
    -------
    pathlib.Path
        ``root``.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    h, w = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
    if min(h, w) < 32:
        raise ValueError(f"image_size must be at least 32 px, got {image_size}")
    lo_n, hi_n = objects_per_image
    if not 1 <= lo_n <= hi_n:
        raise ValueError(f"objects_per_image must be 1 <= lo <= hi, got {objects_per_image}")
    if not 0 < object_size[0] <= object_size[1] < 1:
        raise ValueError(f"object_size must satisfy 0 < lo <= hi < 1, got {object_size}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images: list[dict] = []
    annotations: list[dict] = []
    for i in range(n_images):
        rng = np.random.default_rng([seed, i])
        pixels, anns = _draw_image(rng, h, w, (lo_n, hi_n), object_size)
        file_name = f"{i:06d}.jpg"
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(
            root / "images" / file_name, quality=jpeg_quality, optimize=False
        )
        image_id = i + 1
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    data = {
        "info": {"description": "fovea-ray synthetic mini-COCO", "version": "1", "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": sup} for cid, name, sup in CATEGORIES],
    }
    (root / "instances.json").write_text(json.dumps(data, separators=(",", ":")))
    return root
