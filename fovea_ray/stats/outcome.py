"""A small, uniform record for one test: name, statistic, p-value, decision, or skipped."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TestOutcome:
    """One hypothesis test's outcome (scipy.stats style, plus the decision at ``alpha``).

    ``skipped`` tests carry the ``reason`` and NaN numbers. ``details`` holds named extras
    (JSON-able scalars and short lists).
    """

    __test__ = False  # not a pytest class

    name: str
    statistic: float
    pvalue: float
    alpha: float
    alternative: str = "two-sided"
    skipped: bool = False
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def reject(self) -> bool | None:
        """``pvalue <= alpha``; None when skipped or the p-value is undefined."""
        if self.skipped or not math.isfinite(self.pvalue):
            return None
        return bool(self.pvalue <= self.alpha)

    @classmethod
    def skip(cls, name: str, reason: str, alpha: float) -> TestOutcome:
        return cls(name=name, statistic=math.nan, pvalue=math.nan, alpha=alpha, skipped=True, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "statistic": self.statistic,
            "pvalue": self.pvalue,
            "alpha": self.alpha,
            "reject": self.reject,
            "alternative": self.alternative,
            "skipped": self.skipped,
            "reason": self.reason,
            "details": dict(self.details),
        }
