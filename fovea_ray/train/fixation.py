"""Where each training image is fixated, and foveating a list of differently sized images.

Policies:

- ``"center"``: the image centre, as in the study (its training images were foveated at
  the centre, which is also where COCO objects concentrate).
- ``"uniform"``: a point drawn uniformly over the image, so every object is seen at
  every eccentricity during training.
- ``"none"``: no foveation at all: the unfoveated control network the study lacked.

Fixations are in source pixels, (x, y), in :class:`fovea_ray.foveation.Foveator`'s
convention: pixel ``i``'s centre is at ``i``, so the centre of a ``W``-wide image is
``x = (W - 1) / 2`` and the image spans ``[-0.5, W - 0.5)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fovea_ray.train.config import FIXATION_POLICIES

__all__ = ["draw_fixations", "eval_fixations", "foveate_images"]


def draw_fixations(
    policy: str, sizes: Sequence[tuple[int, int]], generator: torch.Generator | None = None
) -> torch.Tensor | None:
    """Fixations (B, 2) float32 (x, y) for images of ``sizes`` [(H, W), ...]; ``None`` for "none".

    ``generator`` drives the "uniform" policy (seed it from the run's seed, step and rank
    so a resumed run draws the same points).
    """
    if policy not in FIXATION_POLICIES:
        raise ValueError(f"unknown fixation policy {policy!r}; choose one of {', '.join(FIXATION_POLICIES)}")
    if policy == "none":
        return None
    hw = torch.tensor([[h, w] for h, w in sizes], dtype=torch.float32).reshape(-1, 2)
    wh = hw.flip(1)
    if policy == "center":
        return (wh - 1) / 2
    return torch.rand(wh.shape, generator=generator) * wh - 0.5


def eval_fixations(
    policy: str, sizes: Sequence[tuple[int, int]], image_ids: Sequence[int], seed: int
) -> torch.Tensor | None:
    """Validation fixations: like :func:`draw_fixations`, fixed per image id.

    The "uniform" points depend only on (seed, image id), so every evaluation of a run
    (and of a resumed run) scores the same foveated validation images.
    """
    if policy != "uniform":
        return draw_fixations(policy, sizes)
    rows = []
    for (h, w), image_id in zip(sizes, image_ids):
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(image_id))
        rows.append(torch.rand(2, generator=g) * torch.tensor([float(w), float(h)]) - 0.5)
    return torch.stack(rows) if rows else torch.zeros((0, 2))


def foveate_images(foveator: Any, images: Sequence[torch.Tensor], fixations: torch.Tensor | None) -> list[torch.Tensor]:
    """Foveate each (C, H, W) image at its fixation; images of one size go in one call.

    Padding differently sized images into one batch would let the blur of the periphery
    pull in the padding, so images are grouped by size instead: a batch of equal sizes
    (the synthetic set, or resized inputs) is one call, COCO's mixed sizes a few. The
    result keeps the inputs' order, dtype and device. ``fixations=None`` returns the
    images unchanged (the unfoveated control).
    """
    images = list(images)
    if fixations is None or not images:
        return images
    if len(fixations) != len(images):
        raise ValueError(f"{len(images)} images but {len(fixations)} fixations")
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.shape), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(images)
    for idx in groups.values():
        batch = torch.stack([images[i] for i in idx])
        fix = fixations[idx].to(device=batch.device, dtype=torch.float32)
        result = foveator(batch, fix)
        for j, i in enumerate(idx):
            out[i] = result[j]
    return out  # type: ignore[return-value]
