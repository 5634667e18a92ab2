"""Write a network-level fit into a board profile, with provenance per value, and score profiles.

:func:`apply_network_fit` turns a :class:`~splitprune.calibrate.netfit.NetworkFit` into a profile
whose fitted coefficients name the rows they came from; :func:`validate_networks` compares any
profile's predictions with a networks file, row by row (``validate --networks``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..board import BoardProfile
from ..errors import ConfigError
from .netfit import NetworkFit
from .published import NetworkRow

__all__ = ["NetworkScore", "apply_network_fit", "validate_networks"]

_LATENCY_FIELDS = {
    "compute": ("latency_s", ("conv_per_mac", "linear_per_mac")),
    "memory": ("latency_s", ("memory_per_byte",)),
    "kernel_overhead": ("latency_s", ("static_per_layer",)),
}
_ENERGY_FIELDS = {
    "static_power_w": ("static_power_w",),
    "per_mac": ("conv_per_mac", "linear_per_mac"),
    "per_byte": ("memory_per_byte",),
}


def _rows_note(fit: NetworkFit, path: Path | None) -> str:
    digest = ""
    if path is not None and path.is_file():
        digest = f" (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:12]})"
    where = f"{path.name}{digest}" if path is not None else "networks file"
    sources = sorted({r.source.split(",")[0] for r in fit.rows if r.source})
    labels = ", ".join(r.label for r in fit.rows[:12]) + (" ..." if len(fit.rows) > 12 else "")
    unstated = sum(r.power_mode is None for r in fit.rows)
    assumed = f" ({unstated} rows state no power mode: taken as the profile's own)" if unstated else ""
    return (
        f"fitted to {len(fit.rows)} whole-network rows of {where}{assumed}: {labels}; "
        f"sources: {'; '.join(sources)}"
    )


def apply_network_fit(profile: BoardProfile, fit: NetworkFit, *, path: Path | None = None) -> BoardProfile:
    """``profile`` with the coefficients ``fit`` freed replaced, and their provenance."""
    data = profile.model_dump(exclude_unset=True)
    values = dict(profile.provenance.values)
    note = _rows_note(fit, path)
    for name in fit.free:
        if name in _LATENCY_FIELDS:
            table, fields = _LATENCY_FIELDS[name]
            for field in fields:
                data[table][field] = fit.latency[name]
                values[f"{table}.{field}"] = f"{note} (coefficient {name!r}, least squares on log latency)"
        elif name == "fp16_efficiency":
            data.setdefault("precisions", {})["fp16"] = {"efficiency": fit.latency[name]}
            values["precisions.fp16"] = f"efficiency {fit.latency[name]:.3f} {note}"
        elif name == "enqueue":
            runtimes = data.setdefault("runtimes", {})
            runtimes["tensorrt"] = {**runtimes.get("tensorrt", {}), "per_inference_s": fit.latency[name]}
            values["runtimes.tensorrt"] = f"per_inference_s {note}"
        elif name == "launch_floor":
            floors = data["latency_s"].get("launch_floor", {})
            data["latency_s"]["launch_floor"] = {k: v * fit.latency[name] for k, v in floors.items()}
            values["latency_s.launch_floor"] = f"base floors x {fit.latency[name]:.3f}, {note}"
    if fit.energy is not None:
        free = ("static_power_w", "per_mac", "per_byte")[: min(3, max(1, len(fit.rows) // 2))]
        for name in free:
            for field in _ENERGY_FIELDS[name]:
                data["energy_j"][field] = fit.energy[name]
                values[f"energy_j.{field}"] = f"{note} (coefficient {name!r}, NNLS on relative energy)"
    summary = fit.summary()
    data["fit_quality"] = {
        "networks_rows": float(len(fit.rows)),
        "networks_loo_latency_mape": summary["loo_latency_mape"],
        **({"networks_loo_energy_mape": summary["loo_energy_mape"]} if summary["loo_energy_mape"] else {}),
    }
    data["provenance"] = {**data["provenance"], "values": values}
    return BoardProfile.model_validate(data)


@dataclass(frozen=True)
class NetworkScore:
    """A profile's predictions against measured whole networks.

    Attributes:
        rows: ``label``, ``measured_s``, ``predicted_s``, ``latency_error``, ``measured_j``,
            ``predicted_j``, ``energy_error`` per row (energy None without a measurement), or
            ``skipped`` with the reason where the profile cannot price the row.
    """

    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON document body: the rows and MAPEs."""
        scored = [r for r in self.rows if "skipped" not in r]
        lat = [abs(r["latency_error"]) for r in scored]
        eng = [abs(r["energy_error"]) for r in scored if r["energy_error"] is not None]
        return {
            "latency_mape": float(np.mean(lat)) if lat else None,
            "energy_mape": float(np.mean(eng)) if eng else None,
            "rows": self.rows,
        }


def _clocks(row: NetworkRow) -> str | None:
    """The ``--clocks`` text of the clocks a row states (MLPerf's MaxQ settings), None without."""
    if row.clocks is None:
        return None
    c = row.clocks
    parts = [f"{k}={v / 1e6}MHz" for k, v in (("gpu", c.gpu_clock_hz), ("emc", c.emc_clock_hz),
                                             ("cpu", c.cpu_clock_hz)) if v is not None]  # fmt: skip
    parts += [f"cpu_cores={c.cpu_cores}"] if c.cpu_cores is not None else []
    return ",".join(parts)


def validate_networks(profile: BoardProfile, rows: list[NetworkRow]) -> NetworkScore:
    """Predict every row with ``profile`` configured for it, exactly as ``estimate`` would."""
    from ..deploy import Deployment
    from ..pricing import price
    from .netfit import traced_network

    scored: list[dict[str, Any]] = []
    for row in rows:
        try:
            deployed = Deployment.of(
                profile, mode=row.mode, precision=row.precision, launch=row.launch,
                power_mode=None if row.clocks else row.power_mode, clocks=_clocks(row),
            )  # fmt: skip
        except ConfigError as exc:  # a mode the profile lacks or a precision the board cannot run
            scored.append({"label": row.label, "model": row.model, "skipped": str(exc)})
            continue
        graph = price(traced_network(row.model, row.input_shape), deployed)
        predicted_j = graph.total_energy_j
        scored.append({
            "label": row.label, "model": row.model, "batch": row.batch, "mode": row.mode,
            "precision": row.precision, "power_mode": row.power_mode, "launch": row.launch,
            "measured_s": row.latency_s, "predicted_s": graph.total_latency_s,
            "latency_error": graph.total_latency_s / row.latency_s - 1.0,
            "measured_j": row.energy_j, "predicted_j": predicted_j if row.energy_j is not None else None,
            "energy_error": predicted_j / row.energy_j - 1.0 if row.energy_j else None,
        })  # fmt: skip
    return NetworkScore(scored)
