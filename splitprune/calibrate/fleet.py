"""One set of physics fitted over the published rows of many boards (``benchmarks/jetson_profiles.py``).

:func:`fit_fleet` fits coefficients that carry across boards, never per network or per board: every
board keeps its datasheet figures (SM count, MAC rates per precision on CUDA and tensor cores, GPU,
EMC and CPU clocks of each power mode, memory bandwidth) and shares with the others

- ``compute_efficiency``: the share of the fp32 CUDA-core peak a kernel reaches (tiles and waves
  priced apart, :meth:`~splitprune.board.CostModel.tiled_factor`);
- ``efficiency.<precision>.<unit>``: each precision's share relative to fp32's, on CUDA cores
  (``fp16.cuda``) or on one GPU architecture's tensor cores (``fp16.tensor.ampere``, ``int8.tensor.volta``);
- ``memory_efficiency``: the share of the peak DRAM bandwidth a kernel streams at;
- ``kernel_cycles.<launch>``: GPU cycles per kernel apart from its work, per launch (TensorRT
  ``enqueue`` or ``cuda-graph``, or ``eager`` PyTorch);
- ``launch_floor.<cpu>``: a multiplier of the eager dispatch floor per op (which scales with the CPU
  clock), per CPU core type (Carmel, Cortex-A57, A78AE: their work per clock differs);
- ``per_inference_s.eager``: eager PyTorch's host time once per inference apart from its ops (the
  Python module-tree walk, framework entry and exit), in seconds at :data:`REF_CPU_HZ`, scaled like
  the dispatch floor: by the row's CPU clock and its core type's ``launch_floor.<cpu>``;
- on Ampere, fp32 runs on TF32 tensor cores (TensorRT's and cuDNN's default), ``efficiency.fp32.tensor``.

A row is priced as :func:`~splitprune.calibrate.netfit.predict_latency` prices it, its board's unit
features (:func:`~splitprune.calibrate.netfit.row_features`, at the row's own clocks where it states
them) divided by the board's peak rate, bandwidth or clock. Latency is fitted by least squares on log
ratios from a fixed start (scipy's ``trf``; results agree across CPUs to far below 1e-6 relative);
the report holds every row's error when its network was left out of the fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..board import BoardProfile
from ..errors import ConfigError, DataError
from .netfit import RowFeatures, _smooth_max, row_features
from .published import NetworkRow

__all__ = ["REF_CPU_HZ", "FleetFit", "FleetRow", "eager_per_inference_s", "fleet_features", "fit_fleet",
           "precision_unit", "with_row_clocks"]

ROW_CLOCKS = "ROW_CLOCKS"
"""The power-mode name under which a row's stated clocks are priced."""
PRIOR = {
    "compute_efficiency": 0.6,
    "memory_efficiency": 0.6,
    "kernel_cycles.enqueue": 5000.0,
    "kernel_cycles.cuda-graph": 3000.0,
    "kernel_cycles.eager": 5000.0,
    "launch_floor": 1.0,
    "per_inference_s.enqueue": 5e-5,
    "per_inference_s.cuda-graph": 2e-5,
    "per_inference_s.eager": 1e-3,
}
"""Starting values (and the values of coefficients no row informs). ``per_inference_s`` (CPU time per
inference at the board's own CPU clock) of TensorRT is never fitted: one whole network cannot tell it
from the per-kernel cycles. Assumptions: ``enqueueV3`` ~50 us, one ``cudaGraphLaunch`` ~20 us on a
Jetson CPU. Eager PyTorch's ``per_inference_s.eager`` is fitted (start: 1 ms at :data:`REF_CPU_HZ`):
networks of one family with few and many ops (YOLO11 n to x) tell it from the per-op floor."""
REF_CPU_HZ = 2.2656e9
"""The reference CPU clock of the eager costs (the AGX Xavier's Carmel at 2265.6 MHz, whose
torch2trt PyTorch table gave the 105 us dispatch floor)."""


def precision_unit(profile: BoardProfile, precision: str) -> str | None:
    """Which peak a precision runs at: ``fp16.tensor``, ``int8.tensor``, ``fp16.cuda``, ``fp32.tensor``.

    ``fp32.tensor`` is TF32; None is fp32 on CUDA cores (the reference).
    """
    if profile.device is None:
        return None
    tensor = precision in profile.device.tensor_core_macs_per_clock_per_sm
    if precision == "fp32":
        return "fp32.tensor" if tensor else None
    return f"{precision}.{'tensor' if tensor else 'cuda'}"


def with_row_clocks(profile: BoardProfile, row: NetworkRow) -> tuple[BoardProfile, str | None]:
    """``profile`` and the power mode to price ``row`` at: its stated clocks where it gives them."""
    if row.clocks is None or profile.device is None or not profile.power_modes:
        return profile, row.power_mode
    base = profile.power_modes[profile.board.power_mode]
    stated = {
        "gpu_clock_hz": row.clocks.gpu_clock_hz,
        "emc_clock_hz": row.clocks.emc_clock_hz,
        "cpu_clock_hz": row.clocks.cpu_clock_hz,
        "cpu_cores": row.clocks.cpu_cores,
    }
    mode = {**base.model_dump(exclude_none=True), **{k: v for k, v in stated.items() if v is not None}}
    mode.update(nvpmodel_id=None, aliases=[], power_budget_w=None)
    mode.pop("static_power_w", None)
    data = profile.model_dump(exclude_unset=True)
    data["power_modes"] = {**data["power_modes"], ROW_CLOCKS: mode}
    values = {**profile.provenance.values, f"power_modes.{ROW_CLOCKS}": f"clocks stated by row {row.line}"}
    data["provenance"] = {**data["provenance"], "values": values}
    return BoardProfile.model_validate(data), ROW_CLOCKS


def _base_rates(profile: BoardProfile) -> tuple[float, float, float]:
    """fp32 peak MACs/s (TF32 where listed), DRAM bytes/s and GPU Hz of the profile's own power mode."""
    if profile.device is None or not profile.power_modes:
        raise ConfigError(f"{profile.name}: a fleet fit needs [device] and [power_modes] tables")
    device, mode = profile.device, profile.power_modes[profile.board.power_mode]
    top_emc = max(m.emc_clock_hz for m in profile.power_modes.values())
    sms = mode.sm_count or device.sm_count
    peak = sms * (device.peak_macs_per_clock_per_sm("fp32") or 0.0) * mode.gpu_clock_hz
    return peak, device.memory_bandwidth_bps * mode.emc_clock_hz / top_emc, mode.gpu_clock_hz


@dataclass(frozen=True)
class FleetRow:
    """One row's features, normalised by its board's peak rate, bandwidth and clock.

    Attributes:
        board: The board profile's key (``agx-orin``).
        features: Unit features at the row's clocks (:func:`row_features`).
        peak_macs_per_s: The board's fp32 CUDA-core peak in its own power mode.
        bandwidth_bps: The board's DRAM bandwidth in its own power mode.
        gpu_clock_hz: The board's GPU clock in its own power mode.
        unit: :func:`precision_unit` of the row's precision on the board.
        cpu: The board's CPU core type (eager dispatch time per clock differs between them).
        cpu_clock_hz: The CPU clock the row ran at (its stated clocks, else its power mode's).
    """

    board: str
    features: RowFeatures
    peak_macs_per_s: float
    bandwidth_bps: float
    gpu_clock_hz: float
    unit: str | None
    cpu: str = "cpu"
    cpu_clock_hz: float = REF_CPU_HZ

    @property
    def row(self) -> NetworkRow:
        """The measurement."""
        return self.features.row


def fleet_features(
    rows: Sequence[tuple[str, BoardProfile, NetworkRow]],
    *,
    cpu_of: Mapping[str, str] | None = None,
    gpu_of: Mapping[str, str] | None = None,
) -> tuple[list[FleetRow], dict[int, str]]:
    """Features of every ``(board key, base profile, row)`` that can be priced, and why the rest cannot.

    ``cpu_of`` names each board's CPU core type (``carmel``, ``a78ae``): boards that share it share
    the eager dispatch factor. ``gpu_of`` names each board's GPU architecture (``volta``, ``ampere``):
    tensor-core efficiencies are shared by boards of one architecture (``efficiency.fp16.tensor.ampere``).
    """
    out: list[FleetRow] = []
    skipped: dict[int, str] = {}
    for key, profile, row in rows:
        if row.mode == "tensorrt" and row.launch is None:
            skipped[row.line] = f"{key} {row.label}: the source does not say how the engine was launched"
            continue
        try:
            priced, mode = with_row_clocks(profile, row)
            feats = row_features(priced, _at_mode(row, mode))
        except (ConfigError, DataError) as exc:
            skipped[row.line] = f"{key} {row.label}: {exc}"
            continue
        peak, bandwidth, clock = _base_rates(profile)
        unit = precision_unit(profile, row.precision)
        if unit is not None and unit.endswith(".tensor") and gpu_of and key in gpu_of:
            unit = f"{unit}.{gpu_of[key]}"
        cpu_hz = _cpu_clock_hz(priced, mode)
        out.append(FleetRow(key, feats, peak, bandwidth, clock, unit, (cpu_of or {}).get(key, "cpu"), cpu_hz))
    return out, skipped


def _cpu_clock_hz(profile: BoardProfile, mode: str | None) -> float:
    """The CPU clock of ``profile``'s power mode ``mode`` (None: its own)."""
    from ..deploy import Deployment

    power = Deployment.of(profile, mode="eager", power_mode=mode).power
    return power.cpu_clock_hz if power is not None else REF_CPU_HZ


def eager_per_inference_s(coef: Mapping[str, float], cpu: str, cpu_clock_hz: float) -> float:
    """Eager PyTorch's host seconds per inference on ``cpu`` cores at ``cpu_clock_hz``."""
    at_ref_s = _value(coef, "per_inference_s.eager") * _value(coef, f"launch_floor.{cpu}")
    return at_ref_s * REF_CPU_HZ / cpu_clock_hz


def _at_mode(row: NetworkRow, mode: str | None) -> NetworkRow:
    from dataclasses import replace

    return replace(row, power_mode=mode)


def coefficient_names(rows: Sequence[FleetRow]) -> list[str]:
    """The coefficients ``rows`` can inform, in a fixed order."""
    names = ["compute_efficiency", "memory_efficiency"]
    names += sorted({f"efficiency.{r.unit}" for r in rows if r.unit is not None})
    launches = {_launch(r) for r in rows}
    names += [f"kernel_cycles.{name}" for name in ("enqueue", "cuda-graph", "eager") if name in launches]
    names += sorted({f"launch_floor.{r.cpu}" for r in rows if r.row.mode == "eager"})
    names += ["per_inference_s.eager"] if "eager" in launches else []
    return names


def _launch(row: FleetRow) -> str:
    """How the row's kernels are launched: its TensorRT launch, or ``eager`` (PyTorch, one by one)."""
    return "eager" if row.row.mode == "eager" else row.row.launch or "enqueue"


def _value(coef: Mapping[str, float], name: str) -> float:
    return coef.get(name, PRIOR.get(name, PRIOR.get(name.split(".")[0], 1.0)))


def predict(row: FleetRow, coef: Mapping[str, float]) -> float:
    """Seconds per batch of ``row`` under the shared coefficients ``coef``."""
    f = row.features
    efficiency = _value(coef, "compute_efficiency")
    if row.unit is not None:
        efficiency *= _value(coef, f"efficiency.{row.unit}")
    compute = f.compute / (row.peak_macs_per_s * efficiency)
    memory = f.memory / (row.bandwidth_bps * _value(coef, "memory_efficiency"))
    launch = row.row.launch or "enqueue"
    cycles = _value(coef, f"kernel_cycles.{_launch(row)}")
    gpu = np.maximum(compute, memory) + f.overhead * cycles / row.gpu_clock_hz
    if row.row.mode == "eager":
        gpu = _smooth_max(f.floor * _value(coef, f"launch_floor.{row.cpu}"), gpu)
        return float(gpu.sum() + eager_per_inference_s(coef, row.cpu, row.cpu_clock_hz))
    return float(gpu.sum() + f.enqueue * _value(coef, f"per_inference_s.{launch}"))


class _Stacked:
    """Every kernel of every row in flat arrays, so one prediction of all rows is a few numpy calls."""

    def __init__(self, rows: Sequence[FleetRow], names: list[str]) -> None:
        self.names = names
        sizes = [len(r.features.compute) for r in rows]
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        self.compute = np.concatenate([r.features.compute / r.peak_macs_per_s for r in rows])
        self.memory = np.concatenate([r.features.memory / r.bandwidth_bps for r in rows])
        self.overhead = np.concatenate([r.features.overhead / r.gpu_clock_hz for r in rows])
        self.floor = np.concatenate([r.features.floor for r in rows])
        self.eager = np.repeat([r.row.mode == "eager" for r in rows], sizes)
        floors = [f"launch_floor.{r.cpu}" for r in rows]
        self.floor_of = {n: np.repeat([f == n for f in floors], sizes)[self.eager] for n in set(floors)}
        units = [f"efficiency.{r.unit}" if r.unit else "" for r in rows]
        launches = [f"kernel_cycles.{_launch(r)}" for r in rows]
        wanted = [n for n in names if n.startswith("efficiency.")]
        self.unit_of = {n: np.repeat([u == n for u in units], sizes) for n in wanted}
        cycles = [n for n in PRIOR if n.startswith("kernel_cycles.")]
        self.cycles_of = {n: np.repeat([c == n for c in launches], sizes) for n in cycles}
        self.enqueue = np.array([r.features.enqueue * PRIOR[f"per_inference_s.{r.row.launch or 'enqueue'}"]
                                 for r in rows])  # fmt: skip
        self.host = [(i, r.cpu, r.cpu_clock_hz) for i, r in enumerate(rows) if r.row.mode == "eager"]
        self.measured = np.log([r.row.latency_s for r in rows])
        self.has_empty = any(s == 0 for s in sizes)

    def predict(self, coef: Mapping[str, float]) -> np.ndarray:
        efficiency = np.full(self.compute.shape, _value(coef, "compute_efficiency"))
        for name, mask in self.unit_of.items():
            efficiency[mask] *= _value(coef, name)
        cycles = np.zeros(self.compute.shape)
        for name, mask in self.cycles_of.items():
            cycles[mask] = _value(coef, name)
        gpu = np.maximum(self.compute / efficiency, self.memory / _value(coef, "memory_efficiency"))
        gpu = gpu + self.overhead * cycles
        scale = np.ones(int(self.eager.sum()))
        for name, mask in self.floor_of.items():
            scale[mask] = _value(coef, name)
        eager = _smooth_max(self.floor[self.eager] * scale, gpu[self.eager])
        gpu[self.eager] = eager
        total = np.add.reduceat(gpu, self.starts) + self.enqueue
        for i, cpu, hz in self.host:
            total[i] += eager_per_inference_s(coef, cpu, hz)
        return total


def _fit(
    rows: Sequence[FleetRow], names: list[str], start: Mapping[str, float] | None = None
) -> dict[str, float]:
    from scipy.optimize import least_squares

    stacked = _Stacked(rows, names)
    if stacked.has_empty:
        raise DataError("a row has no kernels to price")
    prior = np.log([PRIOR.get(n, 1.0) for n in names])
    x0 = np.log([(start or {}).get(n, PRIOR.get(n, 1.0)) for n in names])

    def residuals(logs: np.ndarray) -> np.ndarray:
        return np.log(stacked.predict(dict(zip(names, np.exp(logs), strict=True)))) - stacked.measured

    result = least_squares(residuals, x0, bounds=(prior - 6.0, prior + 6.0), method="trf",
                           xtol=1e-10, ftol=1e-10, gtol=1e-10)  # fmt: skip
    return dict(zip(names, map(float, np.exp(result.x)), strict=True))


@dataclass(frozen=True)
class FleetFit:
    """Shared coefficients and their errors.

    Attributes:
        coefficients: Fitted values by name (see the module docstring).
        rows: The rows fitted.
        train_error: Relative latency error of each row (by index into ``rows``) under the full fit.
        loo_error: The same when the row's network was left out of the fit.
        skipped: Rows that could not be priced, by line, with the reason.
    """

    coefficients: dict[str, float]
    rows: list[FleetRow]
    train_error: list[float] = field(default_factory=list)
    loo_error: list[float] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)

    def groups(self) -> dict[str, dict[str, Any]]:
        """Leave-one-network-out latency MAPE per board x runtime x precision x launch."""
        out: dict[str, list[float]] = {}
        for r, err in zip(self.rows, self.loo_error, strict=True):
            key = f"{r.board} {r.row.mode} {r.row.precision} {r.row.launch or '-'}"
            out.setdefault(key, []).append(abs(err))
        return {k: {"rows": len(v), "loo_latency_mape": float(np.mean(v))} for k, v in sorted(out.items())}

    def to_dict(self) -> dict[str, Any]:
        """Coefficients, group errors and every row's errors, for JSON."""
        return {
            "coefficients": self.coefficients,
            "groups": self.groups(),
            "rows": [
                {"board": r.board, "label": r.row.label, "line": r.row.line, "measured_s": r.row.latency_s,
                 "train_error": t, "loo_error": e}
                for r, t, e in zip(self.rows, self.train_error, self.loo_error, strict=True)
            ],  # fmt: skip
            "skipped": self.skipped,
        }


def fit_fleet(rows: Sequence[FleetRow], *, skipped: Mapping[int, str] | None = None) -> FleetFit:
    """Fit the shared coefficients to ``rows``, with every row's leave-one-network-out error.

    Raises:
        DataError: Fewer than two networks: nothing can be held out.
    """
    networks = sorted({r.row.model for r in rows})
    if len(networks) < 2:
        raise DataError(f"{len(rows)} rows of {len(networks)} networks: a fleet fit needs two networks")
    names = coefficient_names(rows)
    coef = _fit(rows, names)
    train = [predict(r, coef) / r.row.latency_s - 1.0 for r in rows]
    loo = [0.0] * len(rows)
    for network in networks:
        kept = [r for r in rows if r.row.model != network]
        held = [i for i, r in enumerate(rows) if r.row.model == network]
        names_k = [n for n in names if n in coefficient_names(kept)]
        coef_k = _fit(kept, names_k, start=coef)
        for i in held:
            loo[i] = predict(rows[i], coef_k) / rows[i].row.latency_s - 1.0
    return FleetFit(coef, list(rows), train, loo, dict(skipped or {}))
