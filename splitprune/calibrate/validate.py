"""Check a profile against whole networks measured in a sweep, never scoring one the fit trained on."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..board import BoardProfile
from ..errors import DataError
from .data import SweepData
from .profile import TABLES

__all__ = ["ValidationResult", "ValidationRow", "fitted_networks", "validate"]


@dataclass(frozen=True)
class ValidationRow:
    """One network: measured against predicted.

    Attributes:
        name: Model spec.
        input_shape: Input shape it was measured with.
        measured: Measured cost per inference (seconds or joules).
        predicted: The profile's prediction (same unit).
        error: ``predicted / measured - 1``.
    """

    name: str
    input_shape: tuple[int, ...]
    measured: float
    predicted: float
    error: float

    def to_dict(self, unit: str = "s") -> dict[str, Any]:
        """Plain-data form for JSON, with ``unit`` (``s`` or ``j``) in the quantities' names."""
        return {
            "model": self.name,
            "input_shape": list(self.input_shape),
            f"measured_{unit}": self.measured,
            f"predicted_{unit}": self.predicted,
            "relative_error": self.error,
        }


@dataclass(frozen=True)
class ValidationResult:
    """Whole-network validation of a profile.

    Attributes:
        metric: ``latency`` (seconds) or ``energy`` (joules).
        unit: ``s`` or ``J``.
        board: Profile name.
        rows: One row per held-out network.
        mape: Mean of ``|error|`` over the rows (a fraction).
        fit_networks: Networks of the sweep the profile was fitted on (not scored).
        mode: Execution mode predicted (``eager`` or ``graph``).
    """

    metric: str
    unit: str
    board: str
    rows: tuple[ValidationRow, ...]
    mape: float
    fit_networks: tuple[str, ...] = ()
    mode: str = "eager"

    @property
    def max_abs_error(self) -> float:
        """The largest ``|error|`` over the rows."""
        return max(abs(r.error) for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """The ``splitprune validate --json`` document (one metric)."""
        return {
            "metric": self.metric,
            "unit": self.unit,
            "board": self.board,
            "mode": self.mode,
            "mape": self.mape,
            "max_abs_error": self.max_abs_error,
            "fit_networks": list(self.fit_networks),
            "rows": [r.to_dict(self.unit.lower()) for r in self.rows],
        }


def fitted_networks(profile: BoardProfile, data: SweepData) -> tuple[str, ...]:
    """Networks the profile's network term was fitted on, when it was fitted on this sweep."""
    quality = profile.fit_quality or {}
    if str(quality.get("csv_sha256", "")) != data.sha256:
        return ()
    return tuple(n for n in str(quality.get("fit_networks", "")).split(",") if n)


def validate(
    data: SweepData, profile: BoardProfile, *, metric: str | None = None, mode: str = "eager"
) -> ValidationResult:
    """Predict every held-out network with ``profile`` and compare (see :class:`ValidationResult`).

    Networks the profile was fitted on (``fit_quality.fit_networks``, same CSV) are left out.

    Args:
        data: A sweep with network rows.
        profile: The profile to check.
        metric: ``energy`` or ``latency``; default energy when the sweep measured it.
        mode: Predict ``eager`` execution (as swept) or a ``graph`` replay.

    Raises:
        DataError: No held-out network rows, or the metric was not measured or not fitted in ``profile``.
    """
    metric = metric or ("energy" if data.has_energy else "latency")
    if metric not in TABLES:
        raise DataError(f"unknown metric {metric!r}: use energy, latency or both")
    fitted = str((profile.fit_quality or {}).get("metrics_fitted", "energy_j,latency_s"))
    if TABLES[metric] not in fitted.split(","):
        raise DataError(f"profile {profile.name} has no measured {TABLES[metric]} table; use another metric")
    if metric == "energy" and not data.has_energy:
        raise DataError(f"{data.path} has no energy (no power sensor); use --metric latency")
    basis = str((profile.fit_quality or {}).get("energy_basis", "net"))
    trained = fitted_networks(profile, data)
    networks = [r for r in data.network_rows if r.network not in trained]
    if not networks:
        raise DataError(f"{data.path} has no held-out network rows; add [[network]] to the grid and measure")
    from ..deploy import Deployment
    from ..pricing import price_placeholders
    from .netfit import traced_network

    deployed = Deployment.of(profile, mode=mode).profile
    rows = []
    for row in networks:
        try:
            costs = price_placeholders(traced_network(row.network, row.input_shape), deployed)
        except DataError as exc:
            raise DataError(f"{data.path}:{row.line}: {exc}") from None
        predicted = costs.total_energy_j if metric == "energy" else costs.total_latency_s
        measured = float(row.value(metric, basis) or math.nan)
        rows.append(
            ValidationRow(row.network, row.input_shape, measured, predicted, predicted / measured - 1)
        )
    mape = float(np.mean([abs(r.error) for r in rows]))
    unit = "s" if metric == "latency" else "J"
    return ValidationResult(metric, unit, profile.name, tuple(rows), mape, trained, mode)
