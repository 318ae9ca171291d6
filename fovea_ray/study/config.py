"""The configuration of one ``fovea-ray run``: defaults, a TOML file, CLI overrides.

Precedence: built-in defaults < ``--config run.toml`` < command-line flags. The merged
configuration is written to ``OUT/run.toml`` so a run can be reproduced from its outputs
alone (``fovea-ray run --config OUT/run.toml``).

TOML layout (every key optional)::

    out = "fovea-ray-out"
    seed = 0
    random_control = true   # one network with learnt weights: add its random-weight control
    control_networks = []   # more controls by name (--control NAME)

    [[networks]]      # several networks (fovea_ray.study.networks); none: [extract] model/weights
    name = "trained"
    model = "maskrcnn_resnet101_fpn"   # default: [extract] arch / model
    weights = "runs/foveated"          # "none" | checkpoint | train/pretrain folder | "torchvision" | enum
    [[networks]]
    name = "unfoveated"
    weights = "runs/unfoveated"
    control = true    # compared with every other network of its architecture
    [[networks]]
    name = "random"
    weights = "none"
    seed = 1          # random weights: default the study seed + rank among random networks
    control = true

    [data]            # no annotations/images: the embedded synthetic mini-COCO
    annotations = "/data/coco/annotations/instances_val2017.json"
    images = "s3://bucket/coco/val2017"
    synthetic_images = 160
    synthetic_size = 320

    [prepare]
    n_per_type = 2500
    canvas = 640
    pixels_per_degree = 30.0
    ecc_band = [8.0, 12.0]
    categories = []   # category ids; empty = all

    [extract]
    arch = "resnet101"
    model = ""        # any other network: "resnet50", "vit_b_16@IMAGENET1K_V1", "timm:NAME", "pkg.mod:fn"
    weights = "none"  # "none" | checkpoint path | training output dir | "torchvision"
    layers = ["backbone.body.layer*.*", "backbone.body.layer3.22.bn3"]
    stats = ["mean", "median", "max"]
    batch_size = 4
    chunk_size = 16
    backbone_only = false
    address = ""      # Ray cluster; empty = RAY_ADDRESS or a local Ray

    [test]
    layer = "backbone.body.layer3.22.bn3"
    all_layers = true
    stats = ["mean", "max"]
    permutations = "auto"        # or a number; auto: the smallest P every decision can reject with
    full_permutations = "auto"   # full permutation test (0: skip)
    full_layers = "main"         # "main" or "all"
    classifier = "standardized"  # or "unscaled", or "study" (the paper's, unscaled, lbfgs 500)
    alpha = 0.01
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from fovea_ray.errors import InputError
from fovea_ray.names import DEFAULT_STATS, MAX_CANVAS, STUDY_LAYER


@dataclass
class DataConfig:
    annotations: str = ""
    images: str = ""
    synthetic_images: int = 96
    synthetic_size: int = 256

    @property
    def is_demo(self) -> bool:
        return not self.annotations


@dataclass
class PrepareConfig:
    n_per_type: int = 0  # 0 = as many as the data allows
    canvas: int = 640
    pixels_per_degree: float = 30.0
    ecc_band: list[float] = field(default_factory=lambda: [8.0, 12.0])
    categories: list[int] = field(default_factory=list)


@dataclass
class ExtractConfig:
    arch: str = "resnet101"
    model: str = ""  # a model spec; when set, it replaces arch (and the layers default to :blocks, :default)
    weights: str = "none"
    # Every bottleneck output (the depth sweep) plus the study's own tap inside layer3.22.
    layers: list[str] = field(default_factory=lambda: ["backbone.body.layer*.*", STUDY_LAYER])
    stats: list[str] = field(default_factory=lambda: list(DEFAULT_STATS))
    batch_size: int = 4
    chunk_size: int = 16
    backbone_only: bool = False
    address: str = ""


@dataclass
class TestConfig:
    __test__ = False  # not a pytest class

    layer: str = STUDY_LAYER
    all_layers: bool = True
    stats: list[str] = field(default_factory=lambda: ["mean", "max"])
    # "auto" or a number (fovea_ray.stats.decision): auto is the smallest P with which every
    # decision can reject; a smaller P leaves the decisions it cannot make undecided.
    permutations: int | str = "auto"
    full_permutations: int | str = "auto"
    full_layers: str = "main"
    classifier: str = "standardized"
    alpha: float = 0.01


@dataclass
class RunConfig:
    out: str = "fovea-ray-out"
    seed: int = 0
    random_control: bool = True
    # Networks the others are compared with (--control NAME), besides [[networks]] control = true.
    control_networks: list[str] = field(default_factory=list)
    # [[networks]] tables (name, model, weights, seed, control); empty: the [extract] network.
    networks: list[dict[str, Any]] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    test: TestConfig = field(default_factory=TestConfig)

    # -- construction ------------------------------------------------------------
    @classmethod
    def demo(cls) -> RunConfig:
        """The embedded default: synthetic mini-COCO, R101-FPN with random weights, small canvas."""
        cfg = cls()
        # Only the canvas shrinks: the foveation geometry (30 px/deg, type 0 at 8-12 deg,
        # where the cutoff is about half the display's Nyquist) is the real study's.
        cfg.prepare.canvas = 160
        # 240 images give 100 samples per type (50 held out per type): enough for a layer's
        # separation to survive BH across 34 layers at 0.01 (an accuracy of about 0.75 gives
        # p ~ 1e-6), where the earlier 42 per type could not reach p <= 0.01/34 at all.
        cfg.data.synthetic_images = 240
        cfg.extract.batch_size = 4
        cfg.extract.chunk_size = 8
        cfg.extract.backbone_only = True
        # The decision rule chooses P (3399 for the half permutation, BH across 34 layers at
        # 0.01; 99 for the full test). At this n the full test is cheap enough for every layer.
        cfg.test.full_layers = "all"
        # Two random initialisations of one architecture: the comparison's null case.
        cfg.networks = [{"name": "random-a", "weights": "none"}, {"name": "random-b", "weights": "none"}]
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_toml(self) -> str:
        return dump_toml(self.to_dict())

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# fovea-ray run configuration (reproduce: fovea-ray run --config THIS_FILE)\n" + self.to_toml()
        )
        return path


#: Ranges of the numeric keys, by (table, key): (low, high, low is open, high is open); None: unbounded.
_RANGES: dict[tuple[str, str], tuple[float | None, float | None, bool, bool]] = {
    ("", "seed"): (0, None, False, False),
    ("data", "synthetic_images"): (2, None, False, False),
    ("data", "synthetic_size"): (32, MAX_CANVAS, False, False),
    ("prepare", "n_per_type"): (0, None, False, False),
    ("prepare", "canvas"): (8, MAX_CANVAS, False, False),
    ("prepare", "pixels_per_degree"): (0, None, True, False),
    ("extract", "batch_size"): (1, None, False, False),
    ("extract", "chunk_size"): (1, None, False, False),
    ("test", "permutations"): (0, None, False, False),
    ("test", "full_permutations"): (0, None, False, False),
    ("test", "alpha"): (0, 1, True, True),
}


#: Keys that take a whole number or "auto" (permutation counts chosen by the decision rule).
_COUNT_OR_AUTO = {("test", "permutations"), ("test", "full_permutations")}
#: Keys with a fixed vocabulary.
_CHOICES = {("test", "classifier"): ("standardized", "unscaled", "study"), ("test", "full_layers"): ("main", "all")}


def _check_range(table: str, key: str, value: Any, where: str) -> None:
    """One line naming the file, the table and the key when a numeric value is out of range."""
    bounds = _RANGES.get((table, key))
    if bounds is None:
        return
    lo, hi, lo_open, hi_open = bounds
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    high_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if not (low_bad or high_bad):
        return
    name = f"[{table}] {key}" if table else key
    if lo is not None and hi is not None:
        want = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        want = f"{'>' if lo_open else '>='} {lo:g}"
    else:
        want = f"{'<' if hi_open else '<='} {hi:g}"
    raise InputError(f"{where}: {name} must be {want}, got {value!r}")


def _merge(obj: Any, values: dict[str, Any], where: str, table: str = "", flags: dict | None = None) -> None:
    """Set ``values`` on the config dataclass ``obj``, checking each key's name, type and range.

    ``where`` names the TOML file in messages; a value that came from a command-line flag
    (``flags``, nested like ``values``) is named as such instead.
    """
    flags = flags or {}
    known = {f.name: f for f in fields(obj)}
    prefix = f"{where} [{table}]" if table else where
    for key, value in values.items():
        if key not in known:
            raise InputError(f"{prefix}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        current = getattr(obj, key)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise InputError(f"{prefix}: [{key}] must be a table")
            _merge(current, value, where, key, flags.get(key) if isinstance(flags.get(key), dict) else {})
            continue
        where_key = "command line" if key in flags else where
        if (table, key) in _COUNT_OR_AUTO:
            ok = (isinstance(value, int) and not isinstance(value, bool)) or value == "auto"
            if not ok:
                raise InputError(f'{where_key}: [{table}] {key} must be a whole number >= 0 or "auto", got {value!r}')
            if value != "auto":
                _check_range(table, key, value, where_key)
            setattr(obj, key, value)
            continue
        if (table, key) in _CHOICES and value not in _CHOICES[(table, key)]:
            raise InputError(
                f"{where_key}: [{table}] {key} must be one of {', '.join(_CHOICES[(table, key)])}, got {value!r}"
            )
        if isinstance(current, bool):
            ok = isinstance(value, bool)
        elif isinstance(current, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(current, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(current, list):
            ok = isinstance(value, list)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise InputError(f"{prefix}: {key} = {value!r} has the wrong type (expected {type(current).__name__})")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_range(table, key, value, where_key)
        if (table, key) == ("prepare", "ecc_band"):
            _check_band(value, where_key)
        setattr(obj, key, copy.deepcopy(value))


def _check_band(value: list, where: str) -> None:
    ok = len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not 0 <= value[0] < value[1]:
        raise InputError(f"{where}: [prepare] ecc_band must be [LO, HI] degrees with 0 <= LO < HI, got {value!r}")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults (the demo when no dataset is named), then the TOML file, then ``overrides``.

    ``overrides`` is nested like the TOML (``{"test": {"permutations": 1000}}``); keys whose
    value is ``None`` are ignored, so unset CLI flags do not override the file.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"{path}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not valid TOML ({exc})") from None
    flags = _drop_none(overrides or {})
    merged = _deep_update(values, flags)
    has_data = bool(merged.get("data", {}).get("annotations"))
    cfg = RunConfig() if has_data else RunConfig.demo()
    if "networks" not in merged and any(k in merged.get("extract", {}) for k in ("arch", "model", "weights")):
        cfg.networks = []  # a network named by [extract] replaces the demo's pair
    _merge(cfg, merged, str(path) if path else "config", flags=flags)
    if bool(cfg.data.annotations) != bool(cfg.data.images):
        raise InputError("config: give both the annotations file and the images root (or neither, for the demo)")
    return cfg


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            sub = _drop_none(v)
            if sub:
                out[k] = sub
        elif v is not None:
            out[k] = v
    return out


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dump_toml(d: dict[str, Any]) -> str:
    """A minimal TOML writer for the run config: scalars and lists, tables of them, and
    arrays of tables (``[[networks]]``)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict) and not _is_table_array(v)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
        elif _is_table_array(v):
            for item in v:
                lines.append(f"\n[[{k}]]")
                lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in item.items())
    return "\n".join(lines) + "\n"
