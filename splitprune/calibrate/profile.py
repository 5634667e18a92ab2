"""Build a measured :class:`~splitprune.board.BoardProfile` from a sweep and write it as TOML.

A profile needs both cost tables. A table that was not fitted (``--metric latency``, or a sweep without
a power sensor) is filled with zeros that its provenance labels ``NOT MEASURED`` and that
``fit_quality.metrics_fitted`` omits, so that tools can refuse to use it; it is never a guess dressed
as a measurement.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np

from ..board import BoardProfile, CostModel
from ..errors import DataError
from .data import SweepData, SweepRow
from .fit import GRANULARITIES, NO_TILES, FitResult, LayerData, fit_energy, fit_latency, tiling_candidates
from .network import NetworkOps, default_fit_networks, fit_network_term, network_ops

__all__ = ["PLACEHOLDER", "TABLES", "Calibration", "Terms", "calibrate", "profile_toml", "sweep_mode"]

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
        fit_networks: Networks of the sweep that informed the network term (never validated).
        warnings: Rows dropped and coefficients borrowed, one line each.
    """

    profile: BoardProfile
    fits: dict[str, FitResult]
    unmeasured: tuple[str, ...]
    energy_basis: str
    fit_networks: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "profile": self.profile.model_dump(exclude_none=True),
            "fits": {table: fit.to_dict() for table, fit in self.fits.items()},
            "unmeasured": list(self.unmeasured),
            "energy_basis": self.energy_basis,
            "fit_networks": list(self.fit_networks),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Terms:
    """Which of the model's terms a calibration fits (all by default; fewer for the ablation).

    Attributes:
        launch_floors: Per-kind eager launch floors (off: the paper's form, cost = work).
        static_power: Energy as static power over time plus work (off: energy from work alone).
        network_term: The per-op network term, from the training networks.
        tiles: Candidate tile terms for the conv/GEMM slope, chosen like the granularity: a per-output
            overhead, and tiles in waves over the SMs where the sweep knows the SM count (off: kernel
            padding alone, schema 2's form).
    """

    launch_floors: bool = True
    static_power: bool = True
    network_term: bool = True
    tiles: bool = True


KNOWN_SM_COUNTS = {"H100 80GB HBM3": 132, "H100 PCIe": 114, "H200": 132, "A100": 108, "L4": 58, "T4": 40}
"""SMs by device name, for sweeps that predate the ``sm_count`` header (NVIDIA's published specs:
H100 SXM5 132, H100 PCIe 114, H200 132, A100 108, L4 58, T4 40)."""


def sweep_mode(data: SweepData) -> str:
    """Execution mode the sweep ran in (``eager`` unless its run header says ``graph``)."""
    method = data.runs[0].get("method", {}) if data.runs else {}
    mode = str(method.get("mode", "eager")) if isinstance(method, dict) else "eager"
    return mode if mode in ("eager", "graph") else "eager"


def _usable_rows(data: SweepData, with_energy: bool, energy_basis: str) -> tuple[list[SweepRow], list[str]]:
    """Layer rows with positive finite measurements, and a warning for every row dropped."""
    keep, dropped = [], []
    for row in data.layer_rows:
        values: dict[str, float | None] = {"latency": row.latency_s}
        if with_energy:
            values[f"{energy_basis} energy"] = row.value("energy", energy_basis)
        bad = [f"{k} {v!r}" for k, v in values.items() if v is None or not math.isfinite(v) or v <= 0]
        if bad:
            dropped.append(f"dropped line {row.line} ({row.point_id}): {', '.join(bad)} is not positive")
        else:
            keep.append(row)
    return keep, dropped


def _network_rows(data: SweepData, names: Sequence[str] | None, warnings: list[str]) -> list[SweepRow]:
    rows = {r.network: r for r in data.network_rows}
    if names is None:
        traced = []
        for row in rows.values():
            try:
                traced.append(network_ops(row.network, row.input_shape))
            except DataError as exc:  # the default split skips what it cannot trace; a named one must trace
                warnings.append(f"network {row.network} not used for the network term: {exc}")
        chosen = default_fit_networks(traced)
    else:
        chosen = list(names)
    unknown = [n for n in chosen if n not in rows]
    if unknown:
        known = ", ".join(sorted(rows)) or "none"
        raise DataError(f"--fit-networks: {unknown[0]} is not a network of this sweep (it has: {known})")
    return [rows[n] for n in chosen]


def calibrate(
    data: SweepData,
    *,
    name: str,
    metric: str = "both",
    energy_basis: str = "gross",
    fit_networks: Sequence[str] | None = None,
    terms: Terms = Terms(),  # noqa: B008 - frozen dataclass, immutable
) -> Calibration:
    """Fit a board profile to a sweep.

    Latency is always fitted (every sweep times its layers); energy too with ``metric="both"`` or
    ``"energy"`` when the sweep has a power sensor. A table not fitted is filled with zeros that its
    provenance labels ``NOT MEASURED`` and ``fit_quality.metrics_fitted`` omits. Rows with a
    non-positive or non-finite measurement are dropped with a warning naming them.

    Args:
        data: The parsed sweep.
        name: Board name for the profile.
        metric: ``energy``, ``latency`` or ``both``.
        energy_basis: Fit ``gross`` (the default: what the board draws) or ``net`` (idle-subtracted).
        fit_networks: Networks of the sweep that may inform the network term; ``None`` takes the
            default (:func:`~splitprune.calibrate.network.default_fit_networks`), ``[]`` none.
        terms: Which model terms to fit (the ablation turns some off).

    Raises:
        DataError: Energy is asked for but the sweep measured none, or the data cannot be fitted.
    """
    if metric not in ("energy", "latency", "both"):
        raise DataError(f"unknown metric {metric!r}: use energy, latency or both")
    if energy_basis not in ("net", "gross"):
        raise DataError(f"unknown energy basis {energy_basis!r}: use gross or net")
    with_energy = metric != "latency"
    if with_energy and not data.has_energy:
        raise DataError(
            f"{data.path} has no energy (sensor {data.header('sensor', '?')!r} measures time only); "
            "use --metric latency or measure with a power sensor"
        )
    rows, warnings = _usable_rows(data, with_energy, energy_basis)
    if len(rows) < 8:
        reasons = f" ({len(warnings)} dropped: {warnings[0]} ...)" if warnings else ""
        raise DataError(f"{data.path}: only {len(rows)} usable layer rows, need 8{reasons}; measure more")
    layers = LayerData.of(
        [r.kind for r in rows],
        [r.macs for r in rows],
        [r.mem_bytes for r in rows],
        [r.kernels for r in rows],
        [r.latency_s for r in rows],
        [float(r.value("energy", energy_basis) or 0.0) for r in rows] if with_energy else None,
        shapes=[r.shape for r in rows],
    )
    mode = sweep_mode(data)
    eager = mode == "eager"
    trained = _network_rows(data, fit_networks, warnings) if eager and terms.network_term else []
    networks = [(network_ops(r.network, r.input_shape), r.latency_s) for r in trained]
    overlap = data.header("device", "cuda") != "cpu"
    latency = _fit_latency_and_network(
        layers,
        networks,
        with_floors=eager and terms.launch_floors,
        overlap=overlap,
        candidates=tiling_candidates(sweep_sm_count(data)) if terms.tiles else None,
        fit_overhead=terms.tiles,
    )
    fits = {"latency_s": latency}
    if with_energy:
        fits["energy_j"] = fit_energy(
            layers,
            latency.model,
            with_static_power=terms.static_power,
            granularities=(latency.model.conv_kernel_granularity,),
        )
    for fit in fits.values():
        warnings += [f"{key} borrowed: {how}" for key, how in fit.fallbacks.items()]
    warnings = list(dict.fromkeys(warnings))
    names = tuple(r.network for r in trained)
    profile = _profile(data, name, fits, energy_basis, mode, names, latency.model.network_per_op)
    unmeasured = tuple(t for t in ("energy_j", "latency_s") if t not in fits)
    return Calibration(profile, fits, unmeasured, energy_basis, names, tuple(warnings))


def sweep_sm_count(data: SweepData) -> int | None:
    """The GPU's SM count: the sweep header's ``sm_count``, else :data:`KNOWN_SM_COUNTS` by device name."""
    recorded = data.header("sm_count", "")
    if str(recorded).isdigit():
        return int(recorded)
    name = str(data.header("device_name", ""))
    return next((n for key, n in KNOWN_SM_COUNTS.items() if key in name), None)


def _candidate_name(g: int, tiles: tuple[int, int, float]) -> str:
    name = str(g)
    if tiles[1]:
        name += f" tiles {tiles[0]}x{g} in waves of {tiles[1]}"
    if tiles[2]:
        name += f" +{tiles[2]:g} MACs per output"
    return name


_TIE = 1e-9
"""Scores (cross-validated MAPEs) within this fraction of each other tie: fits agree to about 1e-12 on
every CPU, so a choice between candidates never turns on float noise."""


def _fit_latency_and_network(
    layers: LayerData,
    networks: Sequence[tuple[NetworkOps, float]],
    *,
    with_floors: bool,
    overlap: bool,
    candidates: Sequence[tuple[int, tuple[int, int, float]]] | None = None,
    fit_overhead: bool = False,
) -> FitResult:
    """Fit the latency table for every tiling candidate, add the network term, keep the best.

    A candidate (granularity, and tiles and waves where the SM count is known:
    :func:`~splitprune.calibrate.fit.tiling_candidates`) is scored by its cross-validated layer MAPE
    plus, when training networks are given, their MAPE: single layers alone tie within their noise
    (about 15 % per layer on a GPU).
    """
    best: tuple[float, FitResult] | None = None
    scores: dict[str, float] = {}
    for g, tiles in candidates or [(g, NO_TILES) for g in GRANULARITIES]:
        fit = fit_latency(
            layers,
            with_floors=with_floors,
            overlap=overlap,
            granularities=(g,),
            tiles=tiles,
            fit_overhead=fit_overhead,
        )
        per_op = fit_network_term(fit.model, networks)
        model = fit.model.model_copy(update={"network_per_op": per_op})
        network_mape = np.mean([abs(n.cost(model) / m - 1.0) for n, m in networks]) if networks else 0.0
        score = fit.cv_mape["all"] + float(network_mape)
        scores[_candidate_name(g, tiles)] = score
        if best is None or score < best[0] * (1.0 - _TIE):  # a tie keeps the earlier (simpler) candidate
            best = (score, replace(fit, model=model))
    assert best is not None
    return replace(best[1], granularity_cv_mape=scores)


def _provenance_values(
    fits: dict[str, FitResult], source: str, per_op_networks: Sequence[str]
) -> dict[str, str]:
    values: dict[str, str] = {}
    for table in ("energy_j", "latency_s"):
        fit = fits.get(table)
        if fit is None:
            for key in CostModel.model_fields:
                values[f"{table}.{key}"] = f"{PLACEHOLDER} ({table} was not fitted from this sweep)"
            continue
        written = fit.model.model_dump(exclude_none=True, exclude_unset=True)
        for key in [*written, *(k.split(".")[0] for k in fit.fallbacks if k.split(".")[0] not in written)]:
            how = {
                "conv_kernel_granularity": "chosen by cross-validated layer MAPE + training-network MAPE",
                "output_overhead_macs": "fitted with the slopes (log-ratio least squares) on the layers",
                "tile_rows": "chosen with the granularity (tiles in waves)",
                "concurrent_tiles": "two tiles per SM of the sweep's GPU, chosen with the granularity",
                "network_per_op": "fitted on the training networks "
                + (", ".join(per_op_networks) or "(none: 0)"),
            }.get(key, f"fitted on {fit.points} layers")
            borrowed = [f"{k}: {v}" for k, v in fit.fallbacks.items() if k.split(".")[0] == key]
            measured = f"measured: {how} on {source}" if key in written else "not measured"
            values[f"{table}.{key}"] = measured + (f"; borrowed {'; '.join(borrowed)}" if borrowed else "")
    return values


def _profile(
    data: SweepData,
    name: str,
    fits: dict[str, FitResult],
    energy_basis: str,
    mode: str,
    fit_networks: Sequence[str],
    per_op: float,
) -> BoardProfile:
    unmeasured = [t for t in ("energy_j", "latency_s") if t not in fits]
    source = f"{data.path.name} (sha256 {data.sha256[:16]})"
    board = data.header("board", "unknown board")
    sensor = data.header("sensor", "?")
    power_mode = data.header("nvpmodel", "not readable")
    device = data.header("device", "cuda")
    summary = (
        f"Fitted by splitprune calibrate on {date.today().isoformat()} from {data.path.name} "
        f"(sha256 {data.sha256}): board {board!r}, device {device} "
        f"({data.header('device_name', '?')}), power mode {power_mode!r}, sensor {sensor}, "
        f"dtype {data.header('dtype', '?')}, batch {data.header('batch', '?')}, {mode} mode, "
        f"torch {data.header('torch', '?')}, {data.header('threads', '?')} threads, sweep started "
        f"{data.header('started_at', '?')}. Per-window medians; energy basis {energy_basis}; "
        f"network term from {', '.join(fit_networks) or 'no network'}. "
        f"Tables not measured: {', '.join(unmeasured) or 'none'}."
    )
    quality: dict[str, Any] = {
        "method": "log-ratio least squares (latency), relative NNLS (energy); granularity by k-fold CV",
        "metrics_fitted": ",".join(fits),
        "energy_basis": energy_basis,
        "mode": mode,
        "batch": str(data.header("batch", "?")),
        "fit_networks": ",".join(fit_networks),
        "network_per_op_s": per_op,
        "csv_sha256": data.sha256,
        "flagged_points": float(sum(not r.ok for r in data.rows)),
    }
    for table, fit in fits.items():
        quality[f"{table}_points"] = float(fit.points)
        quality[f"{table}_cv_mape"] = fit.cv_mape
        quality[f"{table}_train_mape"] = fit.train_mape
        quality[f"{table}_granularity_cv_mape"] = fit.granularity_cv_mape
    tables = {t: f.model.model_dump(exclude_none=True, exclude_unset=True) for t, f in fits.items()}
    for table in unmeasured:
        quality[table] = "not measured: placeholder zeros, do not use"
        tables[table] = {
            "conv_per_mac": 0.0,
            "conv_kernel_granularity": 1,
            "linear_per_mac": 0.0,
            "memory_per_byte": 0.0,
            "static_per_layer": 0.0,
        }
    precision = {"fp32": "fp32", "fp16": "fp16"}.get(data.header("dtype"), "fp32")
    try:
        return BoardProfile.model_validate(
            {
                "schema_version": 2,
                "board": {
                    "name": name,
                    "power_mode": power_mode,
                    "precision": precision,
                    "framework": f"pytorch {data.header('torch', '')}".strip(),
                    "device": device,
                },
                **tables,
                "provenance": {
                    "kind": "measured",
                    "summary": summary,
                    "values": _provenance_values(fits, source, fit_networks),
                    "sources": [f"{data.path} sha256={data.sha256}", f"board: {board}"],
                    "replace_with": "",
                    "unmeasured": unmeasured,
                },
                "fit_quality": quality,
            }
        )
    except ValueError as exc:  # pragma: no cover - the fit only produces valid values
        raise DataError(f"fitted profile is invalid ({exc}); report this") from None


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


def board_toml(profile: BoardProfile, *, header: str) -> str:
    """Any profile as TOML text under a one-line comment ``header``."""
    document = profile.model_dump(exclude_none=True, exclude_unset=True)
    parts = [f"# {header}", f"schema_version = {document.pop('schema_version')}\n"]
    for name in ("board", "energy_j", "latency_s", "device", "power_modes", "precisions", "runtimes",
                 "fit_quality", "provenance"):  # fmt: skip
        if document.get(name):
            parts.append(_toml_table(name, document[name]))
    return "\n".join(parts)


def profile_toml(calibration: Calibration) -> str:
    """The profile as TOML text, with a comment header saying what was and was not measured."""
    profile = calibration.profile
    document = profile.model_dump(exclude_none=True, exclude_unset=True)
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
