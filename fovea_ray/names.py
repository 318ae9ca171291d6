"""One home for the names the whole flow shares (torch-free, so the driver can import it).

The CLI, the extraction, the store and the statistics agree on these names by importing
them from here:

* statistic names: :func:`parse_stats` validates and canonicalises them once (``MEAN``
  -> ``mean``, ``topk_mean`` -> ``topk_mean@0.1``), :func:`canonical_stats` gives the
  canonical strings; :data:`DEFAULT_STATS` and :data:`BASIC_STATS` are the defaults;
* the study's layer :data:`STUDY_LAYER` and the default taps per backbone
  :data:`DEFAULT_LAYERS`;
* the batched solver's precisions :data:`PRECISIONS`.

Statistic names (the ``stats`` argument of :func:`fovea_ray.taps.capture`):

``mean``
    arithmetic mean (on a CPU where numba is installed, summed in float64 and rounded
    once to float32; elsewhere torch's float32 mean: see :func:`reduction_numerics`).
``median``
    the exact median with numpy's definition: for an even count, the mean of the two
    middle values (``torch.median`` would return the lower one).
``max`` / ``min``
    extremes.
``std``
    population standard deviation (``ddof=0``, numpy's default).
``topk_mean@K``
    mean of the K largest values; ``K`` an integer count (``topk_mean@10``) or a fraction of
    the valid positions in (0, 1) (``topk_mean@0.05``; at least one value). ``topk_mean``
    alone means ``topk_mean@0.1``. K is clipped to the number of valid positions.
``frac_pos``
    fraction of positions with a strictly positive value.
``hf_energy``
    pixel controls only (:mod:`fovea_ray.controls`): the Laplacian's energy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "BASIC_STATS",
    "COMPILED_NUMERICS",
    "DEFAULT_LAYERS",
    "DEFAULT_STATS",
    "HF_ENERGY",
    "MAX_CANVAS",
    "PRECISIONS",
    "STUDY_LAYER",
    "StatSpec",
    "canonical_stats",
    "parse_stats",
    "reduction_numerics",
    "split_names",
]

#: The layer the study captured (Mask R-CNN R101-FPN, 1024 channels).
STUDY_LAYER = "backbone.body.layer3.22.bn3"
#: The default taps of ``fovea-ray extract`` per backbone: the study's layer and its R50 twin.
DEFAULT_LAYERS: dict[str, tuple[str, ...]] = {
    "resnet101": (STUDY_LAYER,),
    "resnet50": ("backbone.body.layer3.5.bn3",),
}
#: The default statistics (the study's three: Gizdov & Akhtari, section 3).
DEFAULT_STATS: tuple[str, ...] = ("mean", "median", "max")
#: The five basic statistics (a good default for a full sweep).
BASIC_STATS: tuple[str, ...] = ("mean", "median", "max", "min", "std")
#: The pixel controls' high-frequency energy (not a tap statistic).
HF_ENERGY = "hf_energy"
#: The largest model canvas side, px. One 4096 x 4096 image is 200 MB as float32 and its
#: ResNet feature maps several GB per forward; a larger canvas is a typo, not a study.
MAX_CANVAS = 4096
#: Precisions of the batched logistic solver (:func:`fovea_ray.stats.fit_logistic_batched`).
PRECISIONS: tuple[str, ...] = ("mixed", "float32", "float64")

_SIMPLE = ("mean", "median", "max", "min", "std", "frac_pos")
_TOPK = re.compile(r"^topk_mean(?:@(?P<k>[0-9]*\.?[0-9]+(?:[eE]-?[0-9]+)?))?$")


@dataclass(frozen=True)
class StatSpec:
    """One parsed statistic: ``kind`` is a simple name or ``topk_mean``; ``k`` its size."""

    name: str
    kind: str
    k: float | None = None

    def topk_count(self, n: int) -> int:
        """K for a map of ``n`` valid positions (fractions rounded, at least 1, at most n)."""
        if self.k is None:
            raise ValueError(f"{self.name!r} is not a top-k statistic")
        k = self.k * n if self.k < 1 else self.k
        return int(min(n, max(1, round(k))))


def split_names(values: str | Iterable[str] | None) -> list[str]:
    """``"a, b c"`` or ``["a,b", "c"]`` -> ``["a", "b", "c"]`` (empty entries dropped)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for item in values:
        if not isinstance(item, str):
            raise ValueError(f"names must be strings, got {item!r}")
        out.extend(s for s in re.split(r"[,\s]+", item) if s)
    return out


def _parse_one(raw: str, *, allow_hf_energy: bool) -> StatSpec:
    name = raw.strip().lower()
    if name in _SIMPLE or (allow_hf_energy and name == HF_ENERGY):
        return StatSpec(name, name)
    match = _TOPK.match(name)
    if match is None:
        extra = f", {HF_ENERGY}" if allow_hf_energy else ""
        raise ValueError(
            f"unknown statistic {raw!r}; choose from {', '.join(_SIMPLE)}{extra}, "
            "topk_mean@K (K a count or a fraction in (0, 1))"
        )
    k = float(match.group("k")) if match.group("k") else 0.1
    if not (0 < k < 1 or (k >= 1 and k == int(k))):
        raise ValueError(f"bad top-k size in {raw!r}: K must be a whole count >= 1 or a fraction in (0, 1)")
    canonical = f"topk_mean@{int(k)}" if k >= 1 else f"topk_mean@{k:g}"
    return StatSpec(canonical, "topk_mean", k)


def parse_stats(stats: str | Iterable[str], *, allow_hf_energy: bool = False) -> list[StatSpec]:
    """Validate and canonicalise statistic names (see the module docstring).

    Parameters
    ----------
    stats : str or iterable of str
        Names, or one string of names separated by commas or spaces. Case is ignored.
    allow_hf_energy : bool, default False
        Admit ``hf_energy`` (the pixel controls' statistic).

    Returns
    -------
    list of StatSpec
        One per name, in the given order, each with its canonical ``name``.

    Raises
    ------
    ValueError
        Naming the bad entry; a name may appear only once (after canonicalisation).
    """
    specs = [_parse_one(raw, allow_hf_energy=allow_hf_energy) for raw in split_names(stats)]
    if not specs:
        raise ValueError("no statistics requested")
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"statistics listed twice: {', '.join(dupes)}")
    return specs


def canonical_stats(stats: str | Iterable[str], *, allow_hf_energy: bool = True) -> list[str]:
    """The canonical names of ``stats`` (:func:`parse_stats`), e.g. ``["MEAN", "topk_mean"]``
    -> ``["mean", "topk_mean@0.1"]``. ``hf_energy`` is admitted by default: a selection
    of stored statistics may name the pixel controls' own."""
    return [s.name for s in parse_stats(stats, allow_hf_energy=allow_hf_energy)]


#: The compiled CPU reductions' numerics (:mod:`fovea_ray.taps.median_numba`): bump when
#: their round-off changes (2: the mean summed in float64 and rounded once).
COMPILED_NUMERICS = "compiled-2"


def reduction_numerics(device_type: str) -> str:
    """Which per-channel reductions a device's taps run: :data:`COMPILED_NUMERICS` on a
    CPU where numba is installed, else ``"torch"``. Part of a store's numerics fingerprint
    (their means can differ in the last bit)."""
    import importlib.util

    if device_type == "cpu" and importlib.util.find_spec("numba") is not None:
        return COMPILED_NUMERICS
    return "torch"
