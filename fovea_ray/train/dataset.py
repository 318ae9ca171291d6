"""COCO instances for Mask R-CNN training: images, boxes, labels and masks.

Annotations are read with pycocotools; masks come from polygons, uncompressed RLE and
compressed RLE alike (``COCO.annToMask``). Targets follow torchvision's detection
convention: ``boxes`` (N, 4) float32 xyxy in pixels, ``labels`` (N,) int64, ``masks``
(N, H, W) uint8. Crowd regions and degenerate boxes are left out of training targets
(as torchvision's reference recipe does); images left without any object are skipped for
training but kept for validation.

Images are decoded to uint8 on the CPU and sent to the device as such (a quarter of the
bytes of float32); the training step converts and foveates them there.

Labels: with the default 91 classes, a COCO category id *is* the label, so checkpoints
load into :func:`fovea_ray.model.build_model`'s default head and detections name COCO
ids directly. Datasets whose ids do not fit get a contiguous mapping instead
(:class:`LabelMap`), recorded in each checkpoint's ``meta.json`` as ``category_ids``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fovea_ray.errors import InputError

__all__ = [
    "CocoInstances",
    "LabelMap",
    "StepSampler",
    "collate",
    "is_url",
    "load_coco",
    "quiet_prints",
    "split_holdout",
]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_prints() -> Iterator[None]:
    """Silence pycocotools' progress prints (it uses ``print``, which Ray Train workers
    forward to their logger, past any ``redirect_stdout``)."""
    import builtins

    saved = builtins.print
    builtins.print = lambda *args, **kwargs: None
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        builtins.print = saved


def is_url(path: str | Path) -> bool:
    """Whether ``path`` is an fsspec URL (``s3://``, ``gs://``, ``https://``, ...)."""
    return "://" in str(path)


def _read_bytes(location: str | Path) -> bytes:
    if is_url(location):
        import fsspec

        with fsspec.open(str(location), "rb") as fh:
            return fh.read()
    return Path(location).read_bytes()


def load_coco(ann_file: str | Path) -> Any:
    """``pycocotools.coco.COCO`` for ``ann_file`` (a path or an fsspec URL), quietly, with a
    one-line error naming the file if it is missing or unreadable."""
    import json

    from pycocotools.coco import COCO

    path: str | Path = str(ann_file) if is_url(ann_file) else Path(ann_file).expanduser()
    try:
        raw = _read_bytes(path)
    except FileNotFoundError:
        raise InputError(f"{path}: annotation file not found") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: annotation file not readable ({type(err).__name__}: {err})") from err
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("the top level is not a JSON object")
        with quiet_prints():
            coco = COCO()
            coco.dataset = data
            coco.createIndex()
    except (ValueError, KeyError, TypeError, AssertionError) as err:
        raise InputError(f"{path}: not a COCO instances file ({type(err).__name__}: {err})") from err
    if "images" not in coco.dataset or "annotations" not in coco.dataset:
        raise InputError(f"{path}: not a COCO instances file (no 'images' or 'annotations')")
    if not coco.getCatIds():
        raise InputError(f"{path}: no categories")
    return coco


@dataclass(frozen=True)
class LabelMap:
    """Model label <-> COCO category id.

    ``category_ids[label]`` is the category id of model label ``label``; index 0 is the
    background (0). With the identity map (91 classes, COCO ids <= 90) it is simply
    ``[0, 1, ..., 90]``.
    """

    category_ids: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    @classmethod
    def for_categories(cls, cat_ids: Sequence[int], num_classes: int | None = None, source: str = "") -> LabelMap:
        """Identity when every id fits below ``num_classes`` (default 91), else contiguous."""
        cat_ids = sorted(int(c) for c in cat_ids)
        if min(cat_ids) < 1:
            raise InputError(f"{source}: category ids must be >= 1 (0 is the background), got {min(cat_ids)}")
        n = 91 if num_classes is None else int(num_classes)
        if max(cat_ids) < n:
            return cls(tuple(range(n)))
        if num_classes is None:
            n = len(cat_ids) + 1
        if len(cat_ids) + 1 > n:
            raise InputError(f"{source}: {len(cat_ids)} categories do not fit num_classes={n} (background included)")
        return cls(tuple([0, *cat_ids] + [0] * (n - 1 - len(cat_ids))))

    def labels(self) -> dict[int, int]:
        """category id -> label."""
        return {c: i for i, c in enumerate(self.category_ids) if i > 0 and c > 0}


def split_holdout(image_ids: Sequence[int], n_holdout: int, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of image ids into (train, held out)."""
    ids = sorted(int(i) for i in image_ids)
    if n_holdout <= 0:
        return ids, []
    if n_holdout >= len(ids):
        raise InputError(f"val_holdout={n_holdout} leaves no training images (the set has {len(ids)})")
    rng = np.random.default_rng([seed, 7])
    held = set(rng.choice(ids, size=n_holdout, replace=False).tolist())
    return [i for i in ids if i not in held], sorted(held)


def _decode(location: str | Path) -> torch.Tensor:
    """RGB uint8 (3, H, W) from a path or fsspec URL; greyscale, CMYK, palette and alpha
    inputs become RGB."""
    from torchvision.io import ImageReadMode, decode_image

    data = _read_bytes(location)
    try:
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        # Formats libjpeg/libpng refuse (CMYK JPEG, 16-bit PNG, ...) still open with PIL.
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"))
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class CocoInstances(torch.utils.data.Dataset):
    """COCO images with Mask R-CNN targets.

    Parameters
    ----------
    coco : COCO
        a loaded ``pycocotools.coco.COCO`` (see :func:`load_coco`).
    images : str or Path
        the image folder (``file_name`` is relative to it): a path or an fsspec
        URL such as ``s3://bucket/coco/train2017`` (bytes are fetched per item).
    label_map : LabelMap
        category id -> label mapping.
    image_ids : sequence of int or None, optional
        which images (default: all); for training, those without a usable
        object are dropped (``train=True``).
    train : bool, optional
        drop crowd-only/empty images.

    Notes
    -----
    Items are ``(image uint8 (3, H, W), target dict)``. An image that cannot be read is
    logged, recorded in :attr:`errors` (of the loading process) and replaced by the next
    readable item, so one bad file does not end a long run.
    """

    def __init__(
        self,
        coco: Any,
        images: str | Path,
        label_map: LabelMap,
        image_ids: Sequence[int] | None = None,
        *,
        train: bool = True,
    ) -> None:
        self.coco = coco
        self.root: str | Path = str(images).rstrip("/") if is_url(images) else Path(images).expanduser()
        if isinstance(self.root, Path) and not self.root.is_dir():
            raise InputError(f"{self.root}: image folder not found")
        self.label_of = label_map.labels()
        ids = sorted(coco.getImgIds()) if image_ids is None else [int(i) for i in image_ids]
        if train:
            ids = [i for i in ids if self._usable(i)]
        self.ids = ids
        self.errors: list[str] = []

    def _usable(self, image_id: int) -> bool:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id], iscrowd=False))
        return any(a["category_id"] in self.label_of and a["bbox"][2] > 1 and a["bbox"][3] > 1 for a in anns)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> str | Path:
        """Where item ``index``'s image lives (a path, or a URL under a URL root)."""
        name = self.coco.imgs[self.ids[index]]["file_name"]
        return f"{self.root}/{name}" if isinstance(self.root, str) else self.root / name

    def target(self, image_id: int, height: int, width: int) -> dict[str, torch.Tensor]:
        """torchvision detection target of one image (crowd and degenerate objects left out)."""
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id], iscrowd=False))
        boxes, labels, masks, ann_ids = [], [], [], []
        for ann in anns:
            label = self.label_of.get(int(ann["category_id"]))
            if label is None:
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(float(width), x + w), min(float(height), y + h)
            if x1 - x0 <= 1 or y1 - y0 <= 1:
                continue
            if "segmentation" in ann and ann["segmentation"]:
                mask = self.coco.annToMask(ann)
                if mask.shape != (height, width):
                    raise InputError(f"annotation {ann['id']}: mask is {mask.shape}, image is {(height, width)}")
            else:
                # A box without a segmentation still trains the mask head on its rectangle.
                mask = np.zeros((height, width), np.uint8)
                mask[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = 1
            boxes.append((x0, y0, x1, y1))
            labels.append(label)
            masks.append(mask)
            ann_ids.append(int(ann["id"]))
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8),
            "image_id": torch.tensor(image_id, dtype=torch.int64),
            "ann_ids": torch.tensor(ann_ids, dtype=torch.int64),
        }

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Image and target of item ``index``; raises for an unreadable image."""
        image_id = self.ids[index]
        path = self.image_path(index)
        image = _decode(path)
        _, h, w = image.shape
        info = self.coco.imgs[image_id]
        if (info.get("height"), info.get("width")) not in ((h, w), (None, None)):
            log.warning(
                "%s: image is %dx%d but the annotation says %sx%s; using the image",
                path,
                h,
                w,
                info.get("height"),
                info.get("width"),
            )
        return image, self.target(image_id, h, w)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # An unreadable image is recorded and replaced by the next readable one, so every
        # batch stays full and DDP ranks stay in step.
        for attempt in range(min(len(self), 16)):
            i = (index + attempt) % len(self)
            try:
                return self.load(i)
            except Exception as err:  # noqa: BLE001 - one bad file must not end a long run
                msg = f"{self.image_path(i)}: unreadable image ({type(err).__name__}: {err})"
                self.errors.append(msg)
                log.warning("skipping %s", msg)
        raise InputError(
            f"{self.root}: {min(len(self), 16)} consecutive images could not be read; last: {self.errors[-1]}"
        )


def collate(batch: list[Any]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Detection collate: a list of images and a list of targets (sizes differ)."""
    return [b[0] for b in batch], [b[1] for b in batch]


class StepSampler(torch.utils.data.Sampler[int]):
    """Indices for a step-counted run, deterministic in (seed, step, rank).

    Epoch ``e`` is a permutation of the dataset drawn from ``seed`` and ``e``; every rank
    takes its strided share (padded by wrap-around so all ranks have equal counts, as
    ``DistributedSampler`` does). Starting at ``start_step`` skips exactly the indices
    the first ``start_step`` steps used, so a resumed run sees the same data order as an
    uninterrupted one.
    """

    def __init__(
        self,
        n: int,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start_step: int = 0,
        steps: int | None = None,
    ) -> None:
        if n < 1:
            raise InputError("the training set is empty (no image with a usable object)")
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world_size
        self.seed, self.start_step, self.steps = seed, start_step, steps
        self.per_rank = -(-n // world_size)

    def _epoch(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        perm += perm[: self.per_rank * self.world - self.n]
        return perm[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        skip = self.start_step * self.batch_size
        epoch, offset = divmod(skip, self.per_rank)
        stream = itertools.chain.from_iterable(
            self._epoch(e)[offset if e == epoch else 0 :] for e in itertools.count(epoch)
        )
        if self.steps is None:
            yield from stream
        else:
            yield from itertools.islice(stream, max(0, self.steps - self.start_step) * self.batch_size)

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless StepSampler has no length")
        return max(0, self.steps - self.start_step) * self.batch_size
