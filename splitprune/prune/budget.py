"""Pruning budgets: joules per inference, seconds per inference, or a fraction of the baseline."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..errors import SplitpruneError

__all__ = ["Budget", "BudgetError"]

_UNITS = {
    "j": ("energy_j", 1.0),
    "mj": ("energy_j", 1e-3),
    "s": ("latency_s", 1.0),
    "ms": ("latency_s", 1e-3),
    "us": ("latency_s", 1e-6),
}


class BudgetError(SplitpruneError):
    """The budget is malformed or cannot be reached within the pruning guards."""


@dataclass(frozen=True)
class Budget:
    """What the pruned model may cost per inference.

    Attributes:
        value: The number: a fraction of the baseline (0 < value <= 1), or an absolute amount in
            joules (metric ``energy_j``) or seconds (metric ``latency_s``).
        metric: ``energy_j`` or ``latency_s``: which board estimate the budget constrains.
        relative: True when ``value`` is a fraction of the unpruned model's estimate.
    """

    value: float
    metric: Literal["energy_j", "latency_s"] = "energy_j"
    relative: bool = True

    def __post_init__(self) -> None:
        if not self.value > 0:
            raise BudgetError(f"budget must be positive, got {self.value}")
        if self.relative and self.value > 1:
            raise BudgetError(
                f"a relative budget is a fraction of the baseline in (0, 1], got {self.value}; "
                "write an absolute budget with a unit, e.g. 0.05J or 12ms"
            )

    @classmethod
    def parse(cls, text: str | float | Budget) -> Budget:
        """Read ``0.5`` or ``50%`` (of baseline energy), ``0.08J``/``80mJ`` or ``12ms``/``0.012s``."""
        if isinstance(text, Budget):
            return text
        if isinstance(text, (int, float)):
            return cls(float(text))
        raw = text.strip().lower().replace(" ", "")
        match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)(%|j|mj|s|ms|us)?", raw)
        if not match:
            raise BudgetError(
                f"bad budget {text!r}: use a fraction (0.5), a percentage (50%), joules (0.08J, "
                "80mJ) or a latency (12ms)"
            )
        number, unit = float(match.group(1)), match.group(2)
        if unit is None:
            return cls(number)
        if unit == "%":
            return cls(number / 100)
        metric, scale = _UNITS[unit]
        return cls(number * scale, metric=metric, relative=False)  # type: ignore[arg-type]

    def resolve(self, baseline: float) -> float:
        """The budget in the metric's unit, given the unpruned model's ``baseline`` estimate."""
        return self.value * baseline if self.relative else self.value

    def describe(self) -> str:
        """Human form, e.g. ``50 % of baseline energy`` or ``12 ms``."""
        what = "energy" if self.metric == "energy_j" else "latency"
        if self.relative:
            return f"{100 * self.value:g} % of baseline {what}"
        return f"{self.value:g} J" if self.metric == "energy_j" else f"{self.value * 1e3:g} ms"
