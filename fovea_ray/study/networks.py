"""The networks of one study: what ``--network``, ``[[networks]]`` and ``--weights`` name.

A study compares networks (:mod:`fovea_ray.stats.networks`): the network trained on
foveated images against controls of the same architecture. They come from, in order:

1. ``--network NAME=MODEL@WEIGHTS`` (repeatable; ``NAME=WEIGHTS`` on the study's model)
   or the TOML's ``[[networks]]`` array (keys ``name``, ``model``, ``weights``, and
   optionally ``seed`` and ``control``);
2. else the one network of ``--model``/``--arch`` and ``--weights``, named ``trained``
   (``random`` when its weights are ``none``).

When that leaves one network with learnt weights, the random-weight control of the same
architecture is added as ``random`` (``--no-random-control`` / ``random_control = false``
turn it off). Each network with random weights is drawn from its own seed: its ``seed``
key, else the study's seed plus its rank among the random networks (so two random
networks are two initialisations). Every network is extracted into ``stores/NAME.zarr``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fovea_ray.errors import InputError
from fovea_ray.model.spec import (
    NETWORK_NAME_RULE,
    ModelRef,
    model_from_arch,
    parse_model,
    parse_network,
    valid_network_name,
)

__all__ = ["RANDOM_CONTROL", "StudyNetwork", "check_weights", "study_networks"]

#: The name of the random-weight control a study adds.
RANDOM_CONTROL = "random"
#: Weights that name no file.
_KEYWORDS = {"none", "random", "torchvision", "pretrained"}
_ENUM = re.compile(r"^[A-Z][A-Z0-9_]*$")  # torchvision weight enum names: DEFAULT, IMAGENET1K_V2
_ENTRY_KEYS = {"name", "model", "weights", "seed", "control"}


@dataclass(frozen=True)
class StudyNetwork:
    """One network of a study.

    Attributes
    ----------
    name : str
        Its name; its store is ``stores/NAME.zarr``.
    model : ModelRef
        The architecture, with the weights (``model.weights``; ``"none"``: random).
    seed : int
        The seed of random weights.
    control : bool
        Whether the other networks are compared with it.
    """

    name: str
    model: ModelRef
    seed: int
    control: bool = False

    @property
    def random(self) -> bool:
        """Whether the weights are random (``none``)."""
        return str(self.model.weights or "none").lower() in ("none", "random")

    @property
    def weights(self) -> str | None:
        """The weights for :func:`fovea_ray.pipeline.extract.extract` (None: random)."""
        return None if self.random else self.model.weights

    def store(self, out: Path) -> Path:
        """Its store under the study's output folder."""
        return out / "stores" / f"{self.name}.zarr"

    def extract_network(self) -> dict[str, Any]:
        """``extract``'s network arguments: ``arch`` for the detector, else ``model``."""
        arch = self.model.arch
        return {"arch": arch} if arch else {"model": self.model.name}

    def describe(self) -> str:
        seed = f", seed {self.seed}" if self.random else ""
        role = "control, " if self.control else ""
        return f"{self.name} ({role}{self.model.name}, weights {self.model.weights or 'none'}{seed})"


def _study_model(extract: Any) -> str:
    """The study's model name: ``--model`` without its weights, else the ``--arch`` detector."""
    if extract.model:
        return parse_model(extract.model).name
    try:
        return model_from_arch(extract.arch)
    except ValueError as exc:
        raise InputError(f"--arch: {exc}") from None


def _entry(item: Any, where: str, default_model: str) -> tuple[str, ModelRef, int | None, bool]:
    """One ``[[networks]]`` table or ``--network`` text -> (name, model, seed, control)."""
    if isinstance(item, str):
        try:
            ref = parse_network(item, default_model=default_model)
        except ValueError as exc:
            raise InputError(f"--network: {exc}") from None
        return ref.name, ref.model, None, False
    if not isinstance(item, dict):
        raise InputError(f"{where}: each [[networks]] entry must be a table, got {item!r}")
    unknown = sorted(set(item) - _ENTRY_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_ENTRY_KEYS))})")
    name = item.get("name")
    if not isinstance(name, str) or not valid_network_name(name):
        raise InputError(f"{where}: bad network name {name!r}: {NETWORK_NAME_RULE}")
    weights = item.get("weights", "none")
    try:
        ref = parse_model(str(item.get("model") or default_model), weights=str(weights))
    except ValueError as exc:
        raise InputError(f"{where}: network {name!r}: {exc}") from None
    seed = item.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise InputError(f"{where}: network {name!r}: seed must be an integer >= 0, got {seed!r}")
    control = item.get("control", False)
    if not isinstance(control, bool):
        raise InputError(f"{where}: network {name!r}: control must be true or false, got {control!r}")
    return name, ref, seed, control


def check_weights(net: StudyNetwork) -> None:
    """A one-line error, before any extraction, for local weights that do not exist."""
    from fovea_ray.model.weights import resolve_checkpoint

    weights = net.model.weights
    if weights is None or weights.lower() in _KEYWORDS or _ENUM.match(weights) or "://" in weights:
        return
    try:
        resolve_checkpoint(weights)
    except InputError as exc:
        raise InputError(f"network {net.name!r}: weights {exc}") from None


def study_networks(cfg: Any, *, controls: tuple[str, ...] = ()) -> list[StudyNetwork]:
    """The networks of the study ``cfg`` (:class:`fovea_ray.study.config.RunConfig`).

    ``controls`` marks more networks as controls by name (``--control NAME``). Errors
    (a name used twice or not a file name, an unknown control, weights that do not
    exist) are one line, raised before any work starts.
    """
    default_model = _study_model(cfg.extract)
    where = "config [[networks]]"
    raw = [_entry(item, where, default_model) for item in cfg.networks]
    if not raw:
        try:
            ref = parse_model(cfg.extract.model or default_model, weights=cfg.extract.weights or "none")
        except ValueError as exc:
            raise InputError(f"--model: {exc}") from None
        name = RANDOM_CONTROL if str(ref.weights).lower() in ("none", "random") else "trained"
        raw = [(name, ref, None, False)]
    names = [name for name, *_ in raw]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"network name {twice[0]!r} is used twice; give each network its own name")
    unknown = [c for c in controls if c not in names]
    if unknown:
        raise InputError(f"--control {unknown[0]!r} names no network (networks: {', '.join(names)})")
    nets, k = [], 0
    for name, ref, seed, control in raw:
        random = str(ref.weights or "none").lower() in ("none", "random")
        if random and seed is None:
            seed, k = cfg.seed + k, k + 1
        nets.append(StudyNetwork(name, ref, int(cfg.seed if seed is None else seed), control or name in controls))
    learnt = [n for n in nets if not n.random]
    if cfg.random_control and len(nets) == 1 and learnt:
        name = RANDOM_CONTROL if RANDOM_CONTROL not in names else f"{RANDOM_CONTROL}-control"
        nets.append(StudyNetwork(name, learnt[0].model.with_weights("none"), cfg.seed, control=True))
    for net in nets:
        check_weights(net)
    return nets
