"""A seeded synthetic ImageFolder: a few classes of shapes and textures, made on the fly.

It stands in for ImageNet in the tests and the demo of ``fovea-ray pretrain``, because no
dataset can be downloaded there. The layout is ImageNet's (torchvision ``ImageFolder``)::

    ROOT/train/<class>/<class>_<i>.JPEG
    ROOT/val/<class>/<class>_<i>.JPEG

Class folders are named like ImageNet's wnids (``n0000000k_<name>``) so that their sorted
order is the label order, as in ImageNet. Classes differ in what they are (a disc, a
square, a triangle; stripes, checkers, rings), not in colour or mean brightness: every
image has random colours, position, scale, size and aspect, so a classifier must read
shape and spatial frequency, which is exactly what foveation degrades in the periphery.

Image ``i`` of class ``c`` in split ``s`` is drawn from
``numpy.random.default_rng([seed, split, c, i])``: the same arguments give byte-identical
files, and image ``i`` does not depend on how many images are asked for.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CLASSES", "make_synthetic_imagefolder"]

#: The class names (folder ``n{index+1:08d}_{name}``), shapes first, then textures.
CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "stripes", "checkers", "rings")

_SPLITS = {"train": 0, "val": 1}


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two colours of clearly different brightness (either may be the lighter one)."""
    dark, light = rng.uniform(0.0, 0.4, 3), rng.uniform(0.6, 1.0, 3)
    return (dark, light) if rng.random() < 0.5 else (light, dark)


def _draw(name: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One image of class ``name`` as uint8 (H, W, 3)."""
    fg, bg = _colours(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
    size = rng.uniform(0.25, 0.4) * min(h, w)
    if name in ("stripes", "checkers", "rings"):
        theta = rng.uniform(0, math.pi)
        period = rng.uniform(5, 10)
        u = xx * math.cos(theta) + yy * math.sin(theta)
        v = -xx * math.sin(theta) + yy * math.cos(theta)
        if name == "stripes":
            t = np.floor(u / (period / 2)) % 2
        elif name == "checkers":
            t = (np.floor(u / (period / 2)) + np.floor(v / (period / 2))) % 2
        else:
            t = np.floor(np.hypot(xx - cx, yy - cy) / (period / 2)) % 2
        img = bg * (1 - t[..., None]) + fg * t[..., None]
    else:
        # Shapes on a flat background, drawn at 4x and box-filtered down (anti-aliased).
        s = 4
        canvas = Image.new("L", (w * s, h * s), 0)
        d = ImageDraw.Draw(canvas)
        angle = rng.uniform(0, 2 * math.pi)
        if name == "disc":
            d.ellipse([(cx - size) * s, (cy - size) * s, (cx + size) * s, (cy + size) * s], fill=255)
        else:
            n = 4 if name == "square" else 3
            pts = [
                (
                    (cx + size * math.cos(angle + 2 * math.pi * k / n)) * s,
                    (cy + size * math.sin(angle + 2 * math.pi * k / n)) * s,
                )
                for k in range(n)
            ]
            d.polygon(pts, fill=255)
        t = np.asarray(canvas.resize((w, h), Image.BOX), np.float32) / 255
        img = bg * (1 - t[..., None]) + fg * t[..., None]
    img = img + rng.normal(0, 0.03, (h, w, 1))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_synthetic_imagefolder(
    root: str | Path,
    *,
    n_train: int = 40,
    n_val: int = 10,
    n_classes: int = 4,
    size_range: tuple[int, int] = (40, 72),
    seed: int = 0,
    quality: int = 90,
) -> Path:
    """Write a synthetic ImageFolder (``ROOT/train``, ``ROOT/val``) and return ``root``.

    Parameters
    ----------
    root:
        Output folder (created).
    n_train, n_val:
        Images per class in each split.
    n_classes:
        How many of :data:`CLASSES` to use (2 to 6).
    size_range:
        Each image's height and width are drawn independently from this closed range (px),
        so images differ in size and aspect, as ImageNet's do.
    seed:
        Seed of every image (see the module docstring).
    quality:
        JPEG quality.
    """
    if not 2 <= n_classes <= len(CLASSES):
        raise ValueError(f"n_classes must be 2-{len(CLASSES)}, got {n_classes}")
    lo, hi = (int(v) for v in size_range)
    if not 16 <= lo <= hi:
        raise ValueError(f"size_range must satisfy 16 <= low <= high, got {size_range}")
    root = Path(root)
    for split, count in (("train", n_train), ("val", n_val)):
        for c, name in enumerate(CLASSES[:n_classes]):
            folder = root / split / f"n{c + 1:08d}_{name}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng([seed, _SPLITS[split], c, i])
                h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
                Image.fromarray(_draw(name, rng, h, w)).save(folder / f"{folder.name}_{i}.JPEG", quality=quality)
    return root
