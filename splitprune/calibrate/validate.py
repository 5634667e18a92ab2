"""Check a profile against whole networks measured in a sweep (rows the fit never sees)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..board import BoardProfile
from ..errors import DataError, SplitpruneError
from .data import SweepData
from .profile import TABLES

__all__ = ["ValidationResult", "ValidationRow", "validate"]


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

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {**asdict(self), "input_shape": list(self.input_shape)}


@dataclass(frozen=True)
class ValidationResult:
    """Whole-network validation of a profile.

    Attributes:
        metric: ``latency`` (seconds) or ``energy`` (joules).
        unit: ``s`` or ``J``.
        board: Profile name.
        rows: One row per network.
        mape: Mean of ``|error|`` over the rows (a fraction).
    """

    metric: str
    unit: str
    board: str
    rows: tuple[ValidationRow, ...]
    mape: float

    def to_dict(self) -> dict[str, Any]:
        """The ``splitprune validate --json`` document."""
        return {
            "schema": "splitprune.validate/1",
            "metric": self.metric,
            "unit": self.unit,
            "board": self.board,
            "mape": self.mape,
            "rows": [r.to_dict() for r in self.rows],
        }


def validate(data: SweepData, profile: BoardProfile, *, metric: str | None = None) -> ValidationResult:
    """Predict every measured network with ``profile`` and compare (see :class:`ValidationResult`).

    Args:
        data: A sweep with network rows.
        profile: The profile to check.
        metric: ``energy`` or ``latency``; default energy when the sweep measured it.

    Raises:
        DataError: No network rows, or the metric was not measured or not fitted in ``profile``.
    """
    import torch

    from ..energy import annotate
    from ..graph import trace
    from ..models import load_model

    metric = metric or ("energy" if data.has_energy else "latency")
    if metric not in TABLES:
        raise DataError(f"unknown metric {metric!r}: use energy or latency")
    fitted = str((profile.fit_quality or {}).get("metrics_fitted", "energy_j,latency_s"))
    if TABLES[metric] not in fitted.split(","):
        raise DataError(f"profile {profile.name} has no measured {TABLES[metric]} table; use another metric")
    if metric == "energy" and not data.has_energy:
        raise DataError(f"{data.path} has no energy (no power sensor); use --metric latency")
    basis = str((profile.fit_quality or {}).get("energy_basis", "net"))
    networks = data.network_rows
    if not networks:
        raise DataError(f"{data.path} has no network rows; add [[network]] to the grid and measure")
    rows = []
    for row in networks:
        try:
            loaded = load_model(row.network, device="meta")
            graph = trace(loaded.module, torch.empty(row.input_shape, device="meta"))
            graph = annotate(graph, profile, allow_placeholders=True)  # only the fitted metric is read
        except SplitpruneError as exc:
            raise DataError(f"{data.path}:{row.line}: cannot trace {row.network} ({exc})") from None
        predicted = graph.total_latency_s if metric == "latency" else graph.total_energy_j
        measured = float(row.value(metric, basis) or math.nan)
        rows.append(
            ValidationRow(row.network, row.input_shape, measured, predicted, predicted / measured - 1)
        )
    mape = float(np.mean([abs(r.error) for r in rows]))
    return ValidationResult(metric, "s" if metric == "latency" else "J", profile.name, tuple(rows), mape)
