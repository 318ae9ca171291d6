"""The on-disk layout of a fovea-ray activation store (Zarr v3) and its chunk plan.

```
store.zarr/              attrs: config, versions, weights_checksum, foveation, categories ({id: name}), status, store
  samples/               arrays over the sample dimension (chunked K along it)
  activations/<layer>/   values (N, C, S) float32 chunked (K, C, S); coordinate `stat`
  controls/pixels/       values (N, 3, S') float32 chunked (K, 3, S'); coordinate `stat`
```

Every array that varies with the sample is chunked by the same K along the sample axis,
so chunk ``i`` of every array covers samples ``[i*K, min((i+1)*K, N))``: the writer of a
chunk index owns those rows of every array and no two writers ever touch one object.

Dimension names: each group holds one size per dimension name (xarray requires it), so
the (N, 2) fixation and the (N, 4) windows/boxes get their own second dimension names.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMAT = "fovea-ray-store"
FORMAT_VERSION = 1

SAMPLES = "samples"
ACTIVATIONS = "activations"
CONTROLS = "controls/pixels"
VALUES = "values"

DIM_SAMPLE = "sample"
DIM_CHANNEL = "channel"
DIM_STAT = "stat"
DIM_XY = "xy"
DIM_XYWH = "xywh"
DIM_RGB = "rgb"

#: name -> (numpy dtype, trailing shape, trailing dimension names, fill value).
#: ``str`` is Zarr v3's variable-length UTF-8 string type (numpy StringDType in memory).
SAMPLE_ARRAYS: dict[str, tuple[str, tuple[int, ...], tuple[str, ...], object]] = {
    "sample": ("int64", (), (), -1),
    "image_id": ("int64", (), (), -1),
    "ann_id": ("int64", (), (), -1),
    "category_id": ("int64", (), (), -1),
    "label": ("int8", (), (), -1),
    "fixation": ("float64", (2,), (DIM_XY,), float("nan")),
    "eccentricity_deg": ("float64", (), (), float("nan")),
    "window": ("int64", (4,), (DIM_XYWH,), 0),
    "bbox": ("float64", (4,), (DIM_XYWH,), float("nan")),
    "file_name": ("str", (), (), ""),
    # Written by the pipeline, one chunk at a time; `done` is always written last.
    "anchor_score": ("float32", (), (), float("nan")),
    "error": ("str", (), (), ""),
    "done": ("bool", (), (), False),
}

#: The per-chunk results a writer fills in, in the order they are written.
RESULT_ARRAYS = ("anchor_score", "error", "done")


def layer_group(layer: str) -> str:
    """The Zarr group path holding one tapped layer."""
    return f"{ACTIVATIONS}/{layer}"


def validate_layer_name(layer: str) -> None:
    """Layer names become Zarr node names: no '/', no leading '__', not empty or '.'/'..'."""
    if not layer or "/" in layer or layer.startswith("__") or layer in {".", ".."}:
        raise ValueError(f"layer name {layer!r} cannot be a Zarr group name")


@dataclass(frozen=True)
class ChunkPlan:
    """Samples ``0..n_samples-1`` cut into chunks of ``chunk_size`` (the last may be short)."""

    n_samples: int
    chunk_size: int

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

    @property
    def n_chunks(self) -> int:
        """Number of chunks along the sample axis."""
        return -(-self.n_samples // self.chunk_size)

    def bounds(self, chunk_index: int) -> tuple[int, int]:
        """``(start, stop)`` sample range of chunk ``chunk_index``."""
        if not 0 <= chunk_index < self.n_chunks:
            raise IndexError(f"chunk {chunk_index} out of range 0..{self.n_chunks - 1}")
        start = chunk_index * self.chunk_size
        return start, min(start + self.chunk_size, self.n_samples)

    def __iter__(self):
        return iter(range(self.n_chunks))
