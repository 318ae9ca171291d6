"""Decisions that can go either way: the smallest attainable p-value against the threshold.

A permutation p-value ``(1 + #{null >= observed}) / (P + 1)`` is never below
``1 / (P + 1)``. A decision that adjusts for multiplicity compares p-values with
thresholds smaller than ``alpha``: Benjamini-Hochberg across ``m`` layers rejects
anything only if the smallest p-value is at most ``alpha / m``, and Holm's first step is
the same. So with ``P`` permutations the answer "no layer separates the types" can be
fixed before any data is seen: with ``P = 100`` and ``m = 34`` layers at ``alpha = 0.01``,
``1 / 101 = 0.0099 > 0.01 / 34 = 0.00029``, and no layer can ever be called separating.

The rule implemented here (and in the README's statistics section):

* For every decision, compute its smallest attainable p-value (``1 / (P + 1)`` for a
  permutation test; 0 for Kim's asymptotic test, whose ``Phi(T)`` reaches 0 for a
  perfect classifier; ``2 * 0.5**N`` for McNemar's exact test on ``N`` discordant pairs)
  and the smallest threshold its adjustment can apply (``alpha / m`` for BH and Holm
  across ``m`` tests, ``alpha`` for a single test).
* Choose ``P`` so that the first is at most the second: ``P >= m / alpha - 1``
  (:func:`required_permutations`). That is the default (``permutations = "auto"``).
* When a user's ``P`` is smaller, the decision is not made: the answer says
  "cannot be decided with P = ...; needs P >= ..." instead of "none".

Which test decides a layer: Kim's asymptotic test where both held-out classes reach
:func:`fovea_ray.stats.kim.kim_min_test_per_class` at the *smallest threshold* the
decision applies (``alpha / m``: its normal tail is only trusted that far), else the half
permutation test. The same test decides every layer, so BH compares like with like.

References
----------
.. [1] Phipson, B. & Smyth, G. K. (2010). Permutation p-values should never be zero.
   Statistical Applications in Genetics and Molecular Biology 9(1), art. 39.
.. [2] Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B 57.
.. [3] Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J. Stat. 6.
.. [4] Kim, I., Ramdas, A., Singh, A. & Wasserman, L. (2021). Classification accuracy as a
   proxy for two-sample testing. Annals of Statistics 49(1), 411-434.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AUTO",
    "Decision",
    "DecisionPlan",
    "layer_pvalue",
    "mcnemar_smallest_pvalue",
    "required_permutations",
    "resolve_permutations",
    "smallest_pvalue",
]

#: The setting that lets the rule choose ``P``.
AUTO = "auto"


def required_permutations(alpha: float, m: int = 1) -> int:
    """The smallest ``P`` whose smallest p-value ``1 / (P + 1)`` is at most ``alpha / m``.

    ``P >= m / alpha - 1``; e.g. 99 for one test at 0.01, 3399 for BH across 34 layers.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    m = max(int(m), 1)
    P = math.ceil(m / alpha - 1)
    # Guard the float division: 1/(P+1) must really be <= alpha/m.
    while 1.0 / (P + 1) > alpha / m:
        P += 1
    while P > 1 and 1.0 / P <= alpha / m:
        P -= 1
    return max(P, 1)


def smallest_pvalue(n_permutations: int) -> float:
    """``1 / (P + 1)``: the smallest p-value a ``P``-permutation test can give."""
    return 1.0 / (int(n_permutations) + 1)


def mcnemar_smallest_pvalue(n_discordant: int) -> float:
    """The smallest two-sided exact McNemar p-value on ``N`` discordant pairs: ``min(1, 2 * 0.5**N)``."""
    n = int(n_discordant)
    return 1.0 if n <= 0 else min(1.0, 2.0 * 0.5**n)


def resolve_permutations(value: int | str | None, alpha: float, m: int = 1, *, name: str = "permutations") -> int:
    """A ``P`` setting as a number: ``"auto"``/None -> :func:`required_permutations`; an int as given.
    ``name`` names the setting in the error."""
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
        return required_permutations(alpha, m)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ValueError(f"{name} must be a whole number >= 0 or 'auto', got {value!r}") from None
    if isinstance(value, bool) or int(value) != value or int(value) < 0:
        raise ValueError(f"{name} must be a whole number >= 0 or 'auto', got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Decision:
    """One decision of a study and whether it can reject before any data is seen.

    Attributes
    ----------
    name : str
        What is decided (``"layer"``, ``"layers"``, ``"merge_layer"``, ``"main_full_permutation"``).
    test : str
        The deciding test (``kim_asymptotic``, ``kim_half_permutation``, ``full_permutation``).
    n_permutations : int or None
        ``P`` of a permutation test (None for the asymptotic test).
    smallest_p : float
        The smallest p-value the test can give.
    threshold : float
        The smallest threshold the decision's adjustment applies (``alpha / m``).
    adjustment : str
        ``"none"``, ``"bh"`` or ``"holm"``.
    m : int
        The number of tests the adjustment is over.
    alpha : float
    """

    name: str
    test: str
    n_permutations: int | None
    smallest_p: float
    threshold: float
    adjustment: str
    m: int
    alpha: float

    @property
    def decidable(self) -> bool:
        """Whether the test can reach the threshold (with a relative tolerance for rounding)."""
        return self.smallest_p <= self.threshold * (1 + 1e-12)

    @property
    def needs(self) -> int | None:
        """The ``P`` the decision needs (None for a test without permutations)."""
        return None if self.n_permutations is None else required_permutations(self.alpha, self.m)

    def reason(self) -> str:
        """Why the decision cannot be made ("" when it can)."""
        if self.decidable:
            return ""
        where = {"none": "", "bh": f" (BH across {self.m} layers)", "holm": f" (Holm across {self.m} layers)"}[
            self.adjustment
        ]
        if self.n_permutations is None:
            return f"{self.test} cannot reach {self.threshold:.2g}{where}"
        return (
            f"cannot be decided with P = {self.n_permutations}: its smallest p-value, 1/{self.n_permutations + 1} = "
            f"{self.smallest_p:.2g}, exceeds α/m = {self.alpha:g}/{self.m} = {self.threshold:.2g}{where}; "
            f"needs P ≥ {self.needs}"
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "test": self.test,
            "n_permutations": self.n_permutations,
            "smallest_p": self.smallest_p,
            "threshold": self.threshold,
            "adjustment": self.adjustment,
            "m": self.m,
            "decidable": self.decidable,
            "needs_permutations": self.needs,
            "reason": self.reason(),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any], alpha: float) -> Decision:
        return cls(
            name=rec["name"],
            test=rec["test"],
            n_permutations=rec.get("n_permutations"),
            smallest_p=float(rec["smallest_p"]),
            threshold=float(rec["threshold"]),
            adjustment=rec["adjustment"],
            m=int(rec["m"]),
            alpha=float(alpha),
        )


def _decision(name: str, test: str, P: int, alpha: float, m: int, adjustment: str) -> Decision:
    if test == "kim_asymptotic":
        return Decision(name, test, None, 0.0, alpha / m, adjustment, m, alpha)
    return Decision(name, test, int(P), smallest_pvalue(P) if P > 0 else 1.0, alpha / m, adjustment, m, alpha)


@dataclass(frozen=True)
class DecisionPlan:
    """Every decision of one network's tests, made before the tests run (:meth:`make`).

    Attributes
    ----------
    alpha : float
    n_layers : int
        ``m``: the network layers tested (the pixel control is not one of them).
    layer_test : str
        The test that decides each layer (and BH across layers, and the merge layer).
    permutations : int
        ``P`` of the half permutation test (as chosen or given).
    full_permutations : int
        ``P`` of the full permutation test (0: not run).
    auto : dict
        Which ``P`` the rule chose (``{"permutations": bool, "full_permutations": bool}``).
    asymptotic_reliable : bool
        Whether the held-out split reaches Kim's reliable size at ``alpha / m``.
    decisions : tuple of Decision
    """

    alpha: float
    n_layers: int
    layer_test: str
    permutations: int
    full_permutations: int
    auto: dict = field(default_factory=dict)
    asymptotic_reliable: bool = True
    decisions: tuple[Decision, ...] = ()

    @classmethod
    def make(
        cls,
        *,
        alpha: float,
        n_layers: int,
        test_per_class: int,
        permutations: int | str | None = AUTO,
        full_permutations: int | str | None = 0,
    ) -> DecisionPlan:
        """The plan for ``n_layers`` layers with ``test_per_class`` held-out samples of the smaller type.

        ``permutations`` / ``full_permutations``: a number, or ``"auto"`` for the smallest
        ``P`` that lets the decision reject (:func:`required_permutations`). The full
        permutation test decides its layer on its own (at ``alpha``).
        """
        from fovea_ray.stats.kim import kim_min_test_per_class

        m = max(int(n_layers), 1)
        P = resolve_permutations(permutations, alpha, m)
        P_full = resolve_permutations(full_permutations, alpha, 1)
        reliable = int(test_per_class) >= kim_min_test_per_class(alpha / m)
        layer_test = "kim_asymptotic" if reliable or P == 0 else "kim_half_permutation"
        decisions = [
            _decision("layer", layer_test, P, alpha, 1, "none"),
            _decision("layers", layer_test, P, alpha, m, "bh"),
            _decision("merge_layer", layer_test, P, alpha, m, "bh"),
        ]
        if P_full > 0:
            decisions.append(_decision("full_permutation", "full_permutation", P_full, alpha, 1, "none"))
        auto = {
            "permutations": permutations is None or str(permutations).lower() == AUTO,
            "full_permutations": full_permutations is None or str(full_permutations).lower() == AUTO,
        }
        return cls(float(alpha), m, layer_test, P, P_full, auto, bool(reliable), tuple(decisions))

    def get(self, name: str) -> Decision | None:
        return next((d for d in self.decisions if d.name == name), None)

    @property
    def layer_test_unreliable(self) -> bool:
        """The asymptotic test had to decide though the held-out split is below its reliable size
        (no permutations were allowed)."""
        return self.layer_test == "kim_asymptotic" and not self.asymptotic_reliable

    def lines(self) -> list[str]:
        """What the terminal prints before the tests run."""
        out = []
        layers = self.get("layers")
        test = {"kim_asymptotic": "Kim's asymptotic test", "kim_half_permutation": "the half permutation"}
        how = test.get(self.layer_test, self.layer_test)
        if self.layer_test == "kim_half_permutation":
            how += f" with P = {self.permutations}" + (" (chosen by the rule)" if self.auto.get("permutations") else "")
        across = f"BH across {self.n_layers} layers" if self.n_layers > 1 else "one layer"
        out.append(
            f"decisions: each layer by {how}; {across} at α = {self.alpha:g} needs "
            f"p ≤ {layers.threshold:.2g}, smallest attainable {layers.smallest_p:.2g}"
            + ("" if layers.decidable else f" -> {layers.reason()}")
        )
        full = self.get("full_permutation")
        if full is not None:
            out.append(
                f"full permutation: P = {full.n_permutations}"
                + (" (chosen by the rule)" if self.auto.get("full_permutations") else "")
                + f", smallest p {full.smallest_p:.2g} against α = {self.alpha:g}"
                + ("" if full.decidable else f" -> {full.reason()}")
            )
        return out

    def to_record(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "n_layers": self.n_layers,
            "layer_test": self.layer_test,
            "permutations": self.permutations,
            "full_permutations": self.full_permutations,
            "auto": dict(self.auto),
            "asymptotic_reliable": self.asymptotic_reliable,
            "rule": "P >= m/alpha - 1, so that 1/(P+1) <= alpha/m (the smallest threshold BH or Holm across m applies)",
            "decisions": [d.to_record() for d in self.decisions],
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> DecisionPlan:
        alpha = float(rec["alpha"])
        return cls(
            alpha=alpha,
            n_layers=int(rec["n_layers"]),
            layer_test=rec["layer_test"],
            permutations=int(rec["permutations"]),
            full_permutations=int(rec["full_permutations"]),
            auto=dict(rec.get("auto") or {}),
            asymptotic_reliable=bool(rec.get("asymptotic_reliable", True)),
            decisions=tuple(Decision.from_record(d, alpha) for d in rec.get("decisions", [])),
        )


def layer_pvalue(record: dict[str, Any], layer_test: str | None = None) -> float | None:
    """A layer's p-value for H0: P0 = P1 from the test that decides every layer.

    ``layer_test`` is the decision plan's (:class:`fovea_ray.stats.decision.DecisionPlan`):
    ``"kim_asymptotic"`` or ``"kim_half_permutation"``; the same test at every layer, so
    that BH compares like with like. The full permutation test decides its own layer
    only. Without a plan (an older document): the half permutation when it ran and the
    held-out split is below Kim's reliable size, else the asymptotic p-value. None when
    the classifier was skipped.
    """
    c = record.get("c2st") or {}
    if not c:
        return None
    half = (c.get("half_permutation") or {}).get("p")
    if layer_test is None:
        layer_test = "kim_asymptotic" if c.get("asymptotic_reliable", True) or half is None else "kim_half_permutation"
    if layer_test == "kim_half_permutation":
        return None if half is None else float(half)
    p = c.get("p_asymptotic")
    return None if p is None else float(p)
