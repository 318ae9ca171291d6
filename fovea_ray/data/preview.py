"""A PNG of type-1/type-0 pairs exactly as they will enter the model.

Each pair is one category: on the left a type-1 sample (object at the fixation, sharp), on
the right a type-0 sample (object in the periphery, blurred), both rendered by
:func:`fovea_ray.data.render.render_batch` -- the function the extraction pipeline calls --
so what the preview shows is what the network sees. The fixation is marked with a cross,
or, when it lies off the canvas (the usual case for type 0), with an arrow at the canvas
edge pointing toward it. The anchor object's box is outlined.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fovea_ray.errors import InputError
from fovea_ray.io import storage_options as _options

__all__ = ["choose_pairs", "write_preview"]


def choose_pairs(df: pd.DataFrame, n_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """Row positions of ``n_pairs`` (type-1, type-0) pairs, one category after another.

    Categories are visited round-robin in id order, so the preview covers as many
    categories as it has pairs; within a category the samples are drawn with ``seed``.
    """
    rng = np.random.default_rng([seed, 0x9E1])
    pools: dict[int, tuple[list[int], list[int]]] = {}
    for cat in sorted(df["category_id"].unique().tolist()):
        mask = df["category_id"].to_numpy() == cat
        ones = np.flatnonzero(mask & (df["label"].to_numpy() == 1))
        zeros = np.flatnonzero(mask & (df["label"].to_numpy() == 0))
        pools[cat] = (list(rng.permutation(ones)), list(rng.permutation(zeros)))
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n_pairs and any(o and z for o, z in pools.values()):
        for ones, zeros in pools.values():
            if ones and zeros and len(pairs) < n_pairs:
                pairs.append((int(ones.pop()), int(zeros.pop())))
    return pairs


def _read_bytes(uri: str) -> bytes:
    import fsspec

    try:
        with fsspec.open(uri, "rb", **_options()) as fh:
            return fh.read()
    except (OSError, ValueError) as exc:
        raise InputError(f"{uri}: cannot read image ({exc})") from None


def _mark_fixation(ax: Any, fx: float, fy: float, hc: int, wc: int, color: str) -> None:
    # imshow puts pixel centres at integers; continuous coordinate u sits at u - 0.5.
    px, py = fx - 0.5, fy - 0.5
    if -0.5 <= px <= wc - 0.5 and -0.5 <= py <= hc - 0.5:
        ax.plot([px], [py], marker="+", markersize=16, markeredgewidth=2.5, color=color)
        ax.plot([px], [py], marker="o", markersize=5, color=color)
        return
    cx, cy = (wc - 1) / 2, (hc - 1) / 2
    d = np.array([px - cx, py - cy])
    # Where the ray from the centre toward the fixation leaves the canvas (a little inside).
    s = min((wc / 2 - 6) / abs(d[0]) if d[0] else np.inf, (hc / 2 - 6) / abs(d[1]) if d[1] else np.inf)
    tip = np.array([cx, cy]) + s * d
    tail = tip - 0.18 * min(hc, wc) * d / np.linalg.norm(d)
    ax.annotate(
        "",
        xy=tuple(tip),
        xytext=tuple(tail),
        arrowprops={"arrowstyle": "-|>", "color": color, "lw": 2.5, "mutation_scale": 18},
    )
    ax.text(
        *tail,
        "fixation",
        color=color,
        fontsize=8,
        ha="center",
        va="center",
        bbox={"boxstyle": "round,pad=0.15", "fc": "black", "alpha": 0.5, "lw": 0},
    )


def _inset(ax: Any, pix: np.ndarray, box: tuple[float, float, float, float], avoid: tuple[float, float]) -> None:
    """The anchor object at (at least) its own pixel scale, so its sharpness can be judged.

    Placed in the canvas corner farthest from the object and from ``avoid`` (the fixation).
    """
    x, y, w, h = box
    side = max(w, h) * 1.15 + 4
    cx, cy = x + w / 2, y + h / 2
    hc, wc = pix.shape[:2]
    x0, y0 = int(max(0, np.floor(cx - side / 2))), int(max(0, np.floor(cy - side / 2)))
    x1, y1 = int(min(wc, np.ceil(cx + side / 2))), int(min(hc, np.ceil(cy + side / 2)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    corners = {
        (0.01, 0.64): (0.18, 0.18),
        (0.64, 0.64): (0.82, 0.18),
        (0.01, 0.01): (0.18, 0.82),
        (0.64, 0.01): (0.82, 0.82),
    }  # axes position -> its centre as a canvas fraction
    pts = np.array([[cx / wc, cy / hc], [avoid[0] / wc, avoid[1] / hc]])
    pos = max(corners, key=lambda c: (np.min(np.hypot(*(pts - np.array(corners[c])).T)), c))
    sub = ax.inset_axes((pos[0], pos[1], 0.35, 0.35))
    sub.imshow(pix[y0:y1, x0:x1], interpolation="nearest")
    sub.set_xticks([])
    sub.set_yticks([])
    for spine in sub.spines.values():
        spine.set_edgecolor("yellow")


def write_preview(
    df: pd.DataFrame,
    out: str | os.PathLike,
    n_pairs: int = 4,
    *,
    foveator: Any = None,
    device: str | None = None,
    seed: int = 0,
) -> Path | str:
    """Render ``n_pairs`` type-1/type-0 pairs of a manifest side by side into a PNG.

    Parameters
    ----------
    df:
        A manifest (:func:`fovea_ray.data.manifest.build_manifest` / ``read_manifest``).
    out:
        The PNG path.
    n_pairs:
        How many pairs (rows); fewer if the manifest has fewer.
    foveator:
        The foveator; default ``Foveator(pixels_per_degree=<the manifest's>)``.
    device:
        Where to decode and render (default CPU).
    seed:
        Which samples are shown.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from fovea_ray.data.render import decode_image, render_batch

    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    pairs = choose_pairs(df, n_pairs, seed)
    if not pairs:
        raise InputError("the manifest has no category with both a type-1 and a type-0 sample to preview")
    if foveator is None:
        from fovea_ray.foveation import Foveator

        foveator = Foveator(pixels_per_degree=float(df["pixels_per_degree"].iloc[0]))
    rows = [r for pair in pairs for r in pair]
    sub = df.iloc[rows]
    images = [decode_image(_read_bytes(u), device=device) for u in sub["image_uri"]]
    fix = np.stack(sub["fixation_xy"].to_numpy()).astype(float)
    win = np.stack(sub["window_xywh"].to_numpy()).astype(np.int64)
    hc, wc = (int(v) for v in sub["canvas"].iloc[0])
    canvases = render_batch(images, fix, win, (hc, wc), foveator, device=device)
    pix = canvases.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    n = len(pairs)
    fig, axes = plt.subplots(n, 2, figsize=(7.2, 3.6 * n + 0.5), squeeze=False)
    for k, (_, r) in enumerate(sub.iterrows()):
        ax = axes[k // 2][k % 2]
        ax.imshow(pix[k], interpolation="nearest")
        wx, wy, ww, wh = (int(v) for v in r["window_xywh"])
        ox, oy = (wc - ww) // 2 - wx, (hc - wh) // 2 - wy  # source -> canvas offset
        bx, by, bw, bh = (float(v) for v in r["bbox"])
        ax.add_patch(
            matplotlib.patches.Rectangle(
                (bx + ox - 0.5, by + oy - 0.5), bw, bh, fill=False, ec="yellow", lw=1.2, ls="--"
            )
        )
        fx, fy = (float(v) for v in r["fixation_xy"])
        _mark_fixation(ax, fx + ox, fy + oy, hc, wc, "red")
        _inset(ax, pix[k], (bx + ox, by + oy, bw, bh), (fx + ox, fy + oy))
        kind = "type 1 (fovea)" if int(r["label"]) == 1 else "type 0 (periphery)"
        ax.set_title(
            f"{kind}: {r['category_name'] if 'category_name' in r else r['category_id']}\n"
            f"image {int(r['image_id'])}, eccentricity {float(r['eccentricity_deg']):.1f} deg",
            fontsize=9,
        )
        ax.set_xlim(-0.5, wc - 0.5)
        ax.set_ylim(hc - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    ppd = float(df["pixels_per_degree"].iloc[0])
    fig.suptitle(
        f"Model input, {hc}x{wc} canvas, {ppd:g} px/deg: sharp at the fixation (left), "
        f"blurred in the periphery (right)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (3.6 * n + 0.5)))
    import io as _io

    from fovea_ray import io as fio

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    out = fio.write_bytes(out, buf.getvalue())
    return out if fio.is_url(out) else Path(out)
