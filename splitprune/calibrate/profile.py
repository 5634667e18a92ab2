"""Build a measured :class:`~splitprune.board.BoardProfile` from a sweep and write it as TOML.

A profile needs both cost tables. A table that was not fitted (``--metric latency``, or a sweep without
a power sensor) is filled with zeros that its provenance labels ``NOT MEASURED`` and that
``fit_quality.metrics_fitted`` omits, so that tools can refuse to use it; it is never a guess dressed
as a measurement.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from ..board import BoardProfile, CostModel
from ..errors import DataError
from .data import SweepData
from .fit import FitResult, fit_cost_model

__all__ = ["PLACEHOLDER", "TABLES", "Calibration", "calibrate", "profile_toml"]

TABLES = {"latency": "latency_s", "energy": "energy_j"}
PLACEHOLDER = "NOT MEASURED: placeholder (0, granularity 1)"


@dataclass(frozen=True)
class Calibration:
    """A fitted profile and the fits behind it.

    Attributes:
        profile: The validated board profile.
        fits: Fit per table fitted (``latency_s``, ``energy_j``).
        unmeasured: Tables filled with placeholder zeros (not measured), e.g. ``energy_j`` without a
            power sensor.
        energy_basis: ``net`` (idle-subtracted) or ``gross`` energy was fitted.
    """

    profile: BoardProfile
    fits: dict[str, FitResult]
    unmeasured: tuple[str, ...]
    energy_basis: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "profile": self.profile.model_dump(),
            "fits": {table: fit.to_dict() for table, fit in self.fits.items()},
            "unmeasured": list(self.unmeasured),
            "energy_basis": self.energy_basis,
        }


def _fit_rows(data: SweepData, metric: str, energy_basis: str) -> FitResult:
    rows = [r for r in data.layer_rows if r.value(metric, energy_basis) is not None]
    return fit_cost_model(
        [r.kind for r in rows],
        [r.macs for r in rows],
        [r.mem_bytes for r in rows],
        [r.kernels for r in rows],
        [float(r.value(metric, energy_basis) or 0.0) for r in rows],
    )


def calibrate(data: SweepData, *, name: str, metric: str = "both", energy_basis: str = "net") -> Calibration:
    """Fit a board profile to a sweep.

    A profile needs both tables; a table not fitted (``--metric latency``, or no power sensor) is
    filled with zeros that its provenance labels ``NOT MEASURED`` and ``fit_quality.metrics_fitted``
    omits, so tools can refuse to report it.

    Args:
        data: The parsed sweep.
        name: Board name for the profile.
        metric: ``energy``, ``latency`` or ``both``.
        energy_basis: Fit ``net`` (idle-subtracted, the default) or ``gross`` energy.

    Raises:
        DataError: Energy is asked for but the sweep measured none, or the data cannot be fitted.
    """
    if metric not in ("energy", "latency", "both"):
        raise DataError(f"unknown metric {metric!r}: use energy, latency or both")
    if energy_basis not in ("net", "gross"):
        raise DataError(f"unknown energy basis {energy_basis!r}: use net or gross")
    wanted = ["latency", "energy"] if metric == "both" else [metric]
    if "energy" in wanted and not data.has_energy:
        raise DataError(
            f"{data.path} has no energy (sensor {data.header('sensor', '?')!r} measures time only); "
            "use --metric latency or measure with a power sensor"
        )
    fits = {TABLES[m]: _fit_rows(data, m, energy_basis) for m in wanted}
    unmeasured = tuple(t for t in ("energy_j", "latency_s") if t not in fits)
    source = f"{data.path.name} (sha256 {data.sha256[:16]})"
    values: dict[str, str] = {}
    tables: dict[str, CostModel] = {}
    for table in ("energy_j", "latency_s"):
        if table in fits:
            fit = fits[table]
            tables[table] = fit.cost_model()
            for key in CostModel.model_fields:
                how = "chosen by cross-validated MAPE" if key == "conv_kernel_granularity" else "fitted"
                values[f"{table}.{key}"] = (
                    f"measured: {how} (relative least squares, {fit.points} layers) on {source}"
                )
        else:
            tables[table] = CostModel(
                conv_per_mac=0.0, conv_kernel_granularity=1, linear_per_mac=0.0, memory_per_byte=0.0
            )
            for key in CostModel.model_fields:
                values[f"{table}.{key}"] = f"{PLACEHOLDER} ({table} was not fitted from this sweep)"
    board = data.header("board", "unknown board")
    sensor = data.header("sensor", "?")
    mode = data.header("nvpmodel", "not readable")
    device = data.header("device", "cuda")
    summary = (
        f"Fitted by splitprune calibrate on {date.today().isoformat()} from {data.path.name} "
        f"(sha256 {data.sha256}): board {board!r}, device {device} "
        f"({data.header('device_name', '?')}), power mode {mode!r}, sensor {sensor}, "
        f"dtype {data.header('dtype', '?')}, batch {data.header('batch', '?')}, "
        f"torch {data.header('torch', '?')}, {data.header('threads', '?')} threads, sweep started "
        f"{data.header('started_at', '?')}. Per-window medians; "
        f"energy basis {energy_basis}. Tables not measured: {', '.join(unmeasured) or 'none'}."
    )
    quality: dict[str, Any] = {
        "method": "non-negative least squares on relative residuals; granularity by k-fold CV MAPE",
        "metrics_fitted": ",".join(fits),
        "energy_basis": energy_basis,
        "csv_sha256": data.sha256,
        "flagged_points": float(sum(not r.ok for r in data.rows)),
    }
    for table, fit in fits.items():
        quality[f"{table}_points"] = float(fit.points)
        quality[f"{table}_cv_mape"] = fit.cv_mape
        quality[f"{table}_cv_r2"] = fit.cv_r2
        quality[f"{table}_train_mape"] = fit.train_mape
        quality[f"{table}_granularity_cv_mape"] = fit.granularity_cv_mape
    for table in unmeasured:
        quality[table] = "not measured: placeholder zeros, do not use"
    precision = {"fp32": "fp32", "fp16": "fp16"}.get(data.header("dtype"), "fp32")
    try:
        profile = BoardProfile.model_validate(
            {
                "schema_version": 1,
                "board": {
                    "name": name,
                    "power_mode": mode,
                    "precision": precision,
                    "framework": f"pytorch {data.header('torch', '')}".strip(),
                    "device": device,
                },
                **{table: model.model_dump() for table, model in tables.items()},
                "provenance": {
                    "kind": "measured",
                    "summary": summary,
                    "values": values,
                    "sources": [f"{data.path} sha256={data.sha256}", f"board: {board}"],
                    "replace_with": "",
                    "unmeasured": list(unmeasured),
                },
                "fit_quality": quality,
            }
        )
    except ValueError as exc:  # pragma: no cover - the fit only produces valid values
        raise DataError(f"fitted profile is invalid ({exc}); report this") from None
    return Calibration(profile=profile, fits=fits, unmeasured=unmeasured, energy_basis=energy_basis)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else "inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[\n" + "".join(f"    {_toml_value(v)},\n" for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_table(name: str, table: dict[str, Any]) -> str:
    lines = [f"[{name}]"]
    nested = []
    for key, value in table.items():
        quoted = key if key.replace("_", "").isalnum() else json.dumps(key)
        if isinstance(value, dict):
            nested.append(_toml_table(f"{name}.{quoted}", value))
        else:
            lines.append(f"{quoted} = {_toml_value(value)}")
    return "\n".join(lines) + "\n" + "".join("\n" + t for t in nested)


def profile_toml(calibration: Calibration) -> str:
    """The profile as TOML text, with a comment header saying what was and was not measured."""
    profile = calibration.profile
    document = profile.model_dump(exclude_none=True)
    header = [
        f"# {profile.board.name}: MEASURED profile written by `splitprune calibrate`.",
        f"# {profile.provenance.sources[0]}",
    ]
    for table in calibration.unmeasured:
        header.append(f"# [{table}] is NOT MEASURED: placeholder zeros; do not use it.")
    parts = ["\n".join(header), f"schema_version = {document.pop('schema_version')}\n"]
    for name in ("board", "energy_j", "latency_s", "fit_quality", "provenance"):
        if name in document:
            parts.append(_toml_table(name, document[name]))
    return "\n".join(parts)
