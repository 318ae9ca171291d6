"""An ImageFolder listed into columnar arrays, and checked, on the driver.

ImageNet's layout (torchvision ``ImageFolder``): ``ROOT/train/<wnid>/*.JPEG`` and
``ROOT/val/<wnid>/*.JPEG``; the sorted class-folder names are the labels 0..K-1. The
index keeps one Arrow string array of relative file names (``<wnid>/<file>``) and one
int32 label array: at ImageNet's 1.28M files that is about 60 MB, where 1.28M Python
dicts would take over 1 GB. Each class folder is listed on its own (``os.scandir``
locally, ``fs.ls`` on an fsspec URL) and appended as one Arrow chunk, so the driver
never holds the whole listing as Python strings at once.

Bad input fails here, before any worker starts, with a one-line :class:`InputError`
naming the folder or file: a missing ``train/``, no class folders, an empty class
folder, a validation class unknown to ``train/``, or a probed image that does not decode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from fovea_ray.errors import InputError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderIndex", "index_imagefolder", "join", "probe_images"]

#: File endings torchvision's ImageFolder accepts (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _is_url(path: str) -> bool:
    return "://" in path


def join(root: str, name: str) -> str:
    """``root/name`` for a local path or an fsspec URL."""
    return root.rstrip("/") + "/" + name


@dataclass(frozen=True)
class ImageFolderIndex:
    """One split of an ImageFolder: ``names[i]`` (relative to ``root``) has label ``labels[i]``.

    Attributes
    ----------
    root:
        The split folder (``.../train``), a path or URL.
    classes:
        The class-folder names in label order (sorted, as torchvision's ImageFolder).
    names:
        Arrow string array, ``<class>/<file>`` per image, class by class, sorted.
    labels:
        int32 array of the same length.
    """

    root: str
    classes: tuple[str, ...]
    names: pa.ChunkedArray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def table(self) -> pa.Table:
        """The index as an Arrow table (``name``, ``label``), what the read tasks receive."""
        return pa.table({"name": self.names, "label": pa.array(self.labels)})

    def nbytes(self) -> int:
        """Bytes held by the index arrays."""
        return int(self.names.nbytes + self.labels.nbytes)


def _list_local(folder: str) -> tuple[list[str], list[str]]:
    """(sub-folders, image files) of a local folder, each sorted."""
    dirs, files = [], []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_dir():
                dirs.append(entry.name)
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(entry.name)
    return sorted(dirs), sorted(files)


def _list_url(fs: Any, folder: str) -> tuple[list[str], list[str]]:
    dirs, files = [], []
    for info in fs.ls(folder, detail=True):
        name = info["name"].rstrip("/").rsplit("/", 1)[-1]
        if info.get("type") == "directory":
            dirs.append(name)
        elif name.lower().endswith(IMAGE_EXTENSIONS):
            files.append(name)
    return sorted(dirs), sorted(files)


def index_imagefolder(root: str, split: str = "train", classes: Sequence[str] | None = None) -> ImageFolderIndex:
    """List ``root/split`` into an :class:`ImageFolderIndex`.

    Parameters
    ----------
    root:
        The ImageFolder root (path or fsspec URL).
    split:
        ``"train"`` or ``"val"``.
    classes:
        The label order to use (the training split's); a class folder not in it is an
        error, and a class of it absent here simply has no images (``val`` may be partial).
    """
    folder = join(root, split)
    if _is_url(root):
        import fsspec

        fs, path = fsspec.core.url_to_fs(folder)
        if not fs.isdir(path):
            raise InputError(f"{folder}: not found (an ImageFolder has {split}/<class>/<image> files)")

        def listing(sub: str) -> tuple[list[str], list[str]]:
            return _list_url(fs, path if not sub else path.rstrip("/") + "/" + sub)

        folder = folder.rstrip("/")
    else:
        folder = os.path.abspath(os.path.expanduser(folder))
        if not os.path.isdir(folder):
            raise InputError(f"{folder}: not found (an ImageFolder has {split}/<class>/<image> files)")

        def listing(sub: str) -> tuple[list[str], list[str]]:
            return _list_local(os.path.join(folder, sub) if sub else folder)

    found, loose = listing("")
    if not found:
        extra = f" ({len(loose)} images lie directly in it; put them in one folder per class)" if loose else ""
        raise InputError(f"{folder}: no class folders{extra}")
    if classes is None:
        classes = tuple(found)
    else:
        classes = tuple(classes)
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise InputError(f"{join(folder, unknown[0])}: class not in the training set ({len(unknown)} such folders)")
    label_of = {c: i for i, c in enumerate(classes)}
    chunks: list[pa.Array] = []
    labels: list[np.ndarray] = []
    for name in found:
        _, files = listing(name)
        if not files:
            raise InputError(
                f"{join(folder, name)}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS[:3])}... images)"
            )
        prefix = name + "/"
        chunks.append(pa.array([prefix + f for f in files], type=pa.string()))
        labels.append(np.full(len(files), label_of[name], dtype=np.int32))
    return ImageFolderIndex(
        root=folder,
        classes=classes,
        names=pa.chunked_array(chunks, type=pa.string()),
        labels=np.concatenate(labels),
    )


def probe_images(index: ImageFolderIndex, count: int) -> int:
    """Decode ``count`` images spread evenly over the index; returns how many were read.

    An image that cannot be read or decoded raises a one-line :class:`InputError`
    naming it, so bad data stops the run before any worker starts. (A corrupt file that
    the probe does not reach is skipped and counted during training instead.)
    """
    from fovea_ray.pretrain.data import DecodeError, decode_rgb, read_bytes

    n = len(index)
    if count <= 0 or n == 0:
        return 0
    picks = np.unique(np.linspace(0, n - 1, num=min(count, n)).round().astype(np.int64))
    for i in picks:
        location = join(index.root, index.names[int(i)].as_py())
        try:
            decode_rgb(read_bytes(location))
        except (OSError, DecodeError) as err:
            raise InputError(f"{location}: unreadable image ({err})") from None
    return len(picks)
