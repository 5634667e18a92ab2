"""Fit a board profile's coefficients to whole-network measurements (``calibrate --networks``).

A handful of ``trtexec`` + ``tegrastats`` runs calibrate a board in minutes. Every row is priced
exactly as :func:`splitprune.annotate` prices it (fusion for TensorRT, precision and power-mode
scaling by :func:`splitprune.deploy.configure`, tiles and waves), with each coefficient set to one
so the predicted latency is a cheap function of the free coefficients::

    latency = sum over kernels of smoothmax(floor, max(c * compute, m * memory) + o * overhead) + e

with ``c`` the MAC slope (``latency_s.conv_per_mac``, also the GEMM and FC slope), ``m`` the time per
byte, ``o`` the GPU time per kernel, ``e`` TensorRT's enqueue per inference, ``floor`` the eager
launch floor (eager rows only) and ``compute`` divided by ``precisions.fp16.efficiency`` on fp16
rows. Latency is fitted by least squares on log ratios, energy (static power over the measured
time plus joules per MAC and per byte) by non-negative least squares on relative errors.

Only as many coefficients are freed as the rows support (:func:`free_coefficients`: one for every two
rows, in :data:`FREE_ORDER`); the rest keep the profile's values (derived from the datasheet). The
report gives the leave-one-network-out error: every network is predicted by a fit that never saw it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ..board import FREE_KINDS, SMOOTH_MAX_EXPONENT, BoardProfile, gemm_shape
from ..errors import DataError
from .published import NetworkRow

__all__ = ["FREE_ORDER", "NetworkFit", "RowFeatures", "fit_networks", "free_coefficients", "traced_network"]

FREE_ORDER = ("compute", "fp16_efficiency", "kernel_overhead", "memory", "enqueue", "launch_floor")
"""Latency coefficients in the order they are freed as rows allow."""


@lru_cache(maxsize=256)
def traced_network(spec: str, input_shape: tuple[int, ...]) -> Any:
    """``spec`` traced on the meta device at ``input_shape`` (cached: rows share networks)."""
    import torch

    from ..graph import trace
    from ..models import load_model

    try:
        module = load_model(spec, device="meta").module
        return trace(module, torch.empty(input_shape, device="meta"), name=spec)
    except Exception as exc:  # noqa: BLE001 - any failure to build a row's network is the row's problem
        raise DataError(f"cannot trace {spec} at {input_shape}: {exc}") from None


@dataclass(frozen=True)
class RowFeatures:
    """One row's kernels under unit coefficients (arrays over kernels).

    Attributes:
        row: The measurement.
        compute: Seconds per unit MAC slope (tiles, waves, precision and clock ratios included).
        memory: Seconds per unit time-per-byte.
        overhead: Seconds per unit kernel overhead (GPU clock ratio).
        floor: Eager CPU floor per kernel at the profile's floors (zeros outside eager).
        enqueue: Seconds per unit enqueue time (CPU clock ratio; 0 outside TensorRT).
        energy_compute: Joules per unit energy slope, summed.
        energy_memory: Joules per unit energy per byte, summed.
        static_gain: Static power in this mode = idle + gain x (fitted static - idle).
        idle_power_w: The device's idle power (0 without a device table).
        fp16: Whether the row is fp16 (its compute divides by the fp16 efficiency).
    """

    row: NetworkRow
    compute: np.ndarray
    memory: np.ndarray
    overhead: np.ndarray
    floor: np.ndarray
    enqueue: float
    energy_compute: float
    energy_memory: float
    static_gain: float
    idle_power_w: float
    fp16: bool


def _unit(profile: BoardProfile) -> BoardProfile:
    """``profile`` with every fitted slope 1, so a configured copy yields the ratios alone."""
    data = profile.model_dump(exclude_unset=True)
    for table in ("latency_s", "energy_j"):
        data[table] = {**data[table], "conv_per_mac": 1.0, "linear_per_mac": 1.0, "gemm_per_mac": 1.0,
                       "memory_per_byte": 1.0, "static_per_layer": 1.0}  # fmt: skip
    data["energy_j"]["static_power_w"] = 1.0 + (profile.device.idle_power_w if profile.device else 0.0)
    runtimes = {k: {**v, "compute_scale": 1.0, "memory_scale": 1.0, "per_inference_s": 1.0,
                    "kernel_overhead_s": None} for k, v in data.get("runtimes", {}).items()}  # fmt: skip
    data["runtimes"] = runtimes or {"tensorrt": {"per_inference_s": 1.0}}
    data["precisions"] = {k: {**v, "efficiency": 1.0} for k, v in data.get("precisions", {}).items()}
    data["schema_version"] = 3
    keys = {f"runtimes.{k}": "unit" for k in data["runtimes"]}
    keys.update({f"{t}.gemm_per_mac": "unit" for t in ("latency_s", "energy_j")})
    data["provenance"] = {**data["provenance"], "values": {**data["provenance"]["values"], **keys}}
    return BoardProfile.model_validate(data)


def row_features(profile: BoardProfile, row: NetworkRow) -> RowFeatures:
    """Price ``row``'s network under unit coefficients of ``profile``."""
    from ..deploy import Deployment
    from ..fusion import fuse

    options: dict[str, Any] = {"precision": row.precision, "power_mode": row.power_mode}
    unit = Deployment.of(_unit(profile), mode=row.mode, **options).profile
    floors_from = Deployment.of(profile, mode="eager", **options).profile if row.mode == "eager" else None
    graph = traced_network(row.model, row.input_shape)
    if row.mode == "tensorrt":
        items = [(graph.nodes[a], k.mem_bytes) for a, k in fuse(graph).items()]
    else:
        items = [(a, a["mem_bytes"]) for a in (graph.nodes[n] for n in graph.order)
                 if a["kind"] not in FREE_KINDS and a["dispatches"] > 0]  # fmt: skip
    lat, eng = unit.latency_s, unit.energy_j
    compute, memory, floor = [], [], []
    e_compute = e_memory = 0.0
    for attrs, mem_bytes in items:
        kind, macs, kernels = attrs["kind"], attrs["macs"], attrs["kernels"]
        shape = gemm_shape(kind, attrs["output_shapes"])
        compute.append(lat.compute_cost(kind, macs=macs, kernels=kernels, shape=shape))
        memory.append(lat.memory_per_byte * mem_bytes)
        e_compute += eng.compute_cost(kind, macs=macs, kernels=kernels, shape=shape)
        e_memory += eng.memory_per_byte * mem_bytes
        if floors_from is not None:
            fl = floors_from.latency_s
            floor.append(fl.floor(kind, attrs.get("dispatches", 1)) + fl.network_per_op)
    n = len(compute)
    idle = profile.device.idle_power_w if profile.device else 0.0
    return RowFeatures(
        row=row,
        compute=np.array(compute),
        memory=np.array(memory),
        overhead=np.full(n, lat.static_per_layer),
        floor=np.array(floor) if floor else np.zeros(n),
        enqueue=lat.per_inference if row.mode == "tensorrt" else 0.0,
        energy_compute=e_compute,
        energy_memory=e_memory,
        static_gain=eng.static_power_w - idle,
        idle_power_w=idle,
        fp16=row.precision == "fp16",
    )


def _smooth_max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    top = np.maximum(a, b)
    safe = np.where(top > 0, top, 1.0)
    p = SMOOTH_MAX_EXPONENT
    return np.where(top > 0, safe * ((a / safe) ** p + (b / safe) ** p) ** (1 / p), 0.0)


def predict_latency(features: RowFeatures, coef: dict[str, float]) -> float:
    """Seconds per batch under latency coefficients ``coef`` (keys of :data:`FREE_ORDER`)."""
    compute = features.compute * coef["compute"] / (coef["fp16_efficiency"] if features.fp16 else 1.0)
    gpu = np.maximum(compute, features.memory * coef["memory"]) + features.overhead * coef["kernel_overhead"]
    if features.row.mode == "eager":
        gpu = _smooth_max(features.floor * coef["launch_floor"], gpu)
    return float(gpu.sum() + features.enqueue * coef["enqueue"])


def free_coefficients(rows: Sequence[NetworkRow]) -> list[str]:
    """The latency coefficients the rows support: one per two rows, those the rows can inform."""
    informative = {
        "compute": True,
        "fp16_efficiency": {r.precision for r in rows} >= {"fp16", "fp32"},
        "kernel_overhead": True,
        "memory": True,
        "enqueue": any(r.mode == "tensorrt" for r in rows),
        "launch_floor": any(r.mode == "eager" for r in rows),
    }
    candidates = [name for name in FREE_ORDER if informative[name]]
    return candidates[: max(1, len(rows) // 2)]


@dataclass(frozen=True)
class NetworkFit:
    """Coefficients fitted to whole networks, and how well they predict networks left out.

    Attributes:
        latency: Latency coefficients (keys of :data:`FREE_ORDER`; launch_floor and fp16_efficiency
            are multipliers of the profile's values).
        free: The latency coefficients that were fitted (the rest kept the profile's values).
        energy: ``static_power_w``, ``per_mac`` and ``per_byte`` (None without energy rows).
        rows: The rows used.
        loo_latency_error: Relative error of each row when its network was left out.
        loo_energy_error: The same for energy (rows with energy only).
        train_latency_error: Relative error of each row under the fit on all rows.
    """

    latency: dict[str, float]
    free: list[str]
    energy: dict[str, float] | None
    rows: list[NetworkRow]
    loo_latency_error: dict[str, float] = field(default_factory=dict)
    loo_energy_error: dict[str, float] = field(default_factory=dict)
    train_latency_error: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """MAPEs for the report and ``--json``."""

        def mape(errors: dict[str, float]) -> float | None:
            return float(np.mean(np.abs(list(errors.values())))) if errors else None

        return {
            "rows": len(self.rows),
            "free_latency_coefficients": self.free,
            "latency": self.latency,
            "energy": self.energy,
            "loo_latency_mape": mape(self.loo_latency_error),
            "loo_energy_mape": mape(self.loo_energy_error),
            "train_latency_mape": mape(self.train_latency_error),
            "loo_latency_error": self.loo_latency_error,
            "loo_energy_error": self.loo_energy_error,
        }


def _prior(profile: BoardProfile) -> dict[str, float]:
    tensorrt = profile.runtimes.get("tensorrt")
    return {
        "compute": profile.latency_s.conv_per_mac,
        "fp16_efficiency": profile.precisions["fp16"].efficiency if "fp16" in profile.precisions else 1.0,
        "kernel_overhead": profile.latency_s.static_per_layer,
        "memory": profile.latency_s.memory_per_byte,
        "enqueue": tensorrt.per_inference_s if tensorrt else 0.0,
        "launch_floor": 1.0,
        "static_power_w": profile.energy_j.static_power_w,
        "per_mac": profile.energy_j.conv_per_mac,
        "per_byte": profile.energy_j.memory_per_byte,
    }


def _fit_latency(
    features: Sequence[RowFeatures], prior: dict[str, float], free: list[str]
) -> dict[str, float]:
    from scipy.optimize import least_squares

    start = np.log([max(prior[k], 1e-12) for k in free])

    def residuals(logs: np.ndarray) -> np.ndarray:
        coef = {**prior, **dict(zip(free, np.exp(logs), strict=True))}
        return np.array([np.log(predict_latency(f, coef) / f.row.latency_s) for f in features])

    # tolerances at float precision and a central-difference Jacobian: with the defaults (1e-8, forward
    # differences) the fit stopped wherever float noise put it, up to 7e-7 of a coefficient apart
    # (nano's enqueue) when each row moved by 1e-12; now 3e-10
    tight = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15, "jac": "3-point"}
    result = least_squares(residuals, start, bounds=(start - 7.0, start + 7.0), method="trf", **tight)
    fitted = {**prior, **dict(zip(free, np.exp(result.x), strict=True))}
    return {k: fitted[k] for k in FREE_ORDER}


def _fit_energy(features: Sequence[RowFeatures], prior: dict[str, float]) -> dict[str, float] | None:
    """Static power, joules per MAC and per byte; as many freed (in that order) as rows allow."""
    from scipy.optimize import nnls

    rows = [f for f in features if f.row.energy_j is not None]
    if len(rows) < 2:
        return None
    measured = np.array([f.row.energy_j for f in rows], dtype=float)
    times = np.array([f.row.latency_s for f in rows])
    idle = np.array([f.idle_power_w for f in rows])
    gain = np.array([f.static_gain for f in rows])
    # static power in the row's mode = idle + gain * (P - idle): linear in P after moving the rest over
    offset = times * idle * (1.0 - gain)
    names = ("static_power_w", "per_mac", "per_byte")
    design = np.column_stack(
        [gain * times, [f.energy_compute for f in rows], [f.energy_memory for f in rows]]
    )
    free = min(3, max(1, len(rows) // 2))  # one coefficient per two rows, static power first
    fixed = np.array([prior[n] for n in names[free:]])
    target = measured - offset - design[:, free:] @ fixed
    solution, _ = nnls(design[:, :free] / measured[:, None], target / measured)
    return dict(zip(names, [*map(float, solution), *map(float, fixed)], strict=True))


def predict_energy(features: RowFeatures, energy: dict[str, float], latency_s: float) -> float:
    """Gross joules per batch, with static power over ``latency_s``."""
    static = features.idle_power_w + features.static_gain * (energy["static_power_w"] - features.idle_power_w)
    return (
        static * latency_s
        + energy["per_mac"] * features.energy_compute
        + energy["per_byte"] * features.energy_memory
    )


def _fit(features: Sequence[RowFeatures], prior: dict[str, float]) -> tuple[dict[str, float], list[str], Any]:
    free = free_coefficients([f.row for f in features])
    return _fit_latency(features, prior, free), free, _fit_energy(features, prior)


def fit_networks(profile: BoardProfile, rows: Sequence[NetworkRow]) -> NetworkFit:
    """Fit ``profile``'s free coefficients to ``rows``, with the leave-one-network-out error.

    Raises:
        DataError: Fewer than three rows or two networks: nothing can be held out.
    """
    networks = sorted({r.model for r in rows})
    if len(rows) < 3 or len(networks) < 2:
        raise DataError(
            f"{len(rows)} rows of {len(networks)} networks cannot support a fit with a held-out check; "
            "measure at least 3 rows of 2 networks (python -m measure networks)"
        )
    features = [row_features(profile, r) for r in rows]
    prior = _prior(profile)
    latency, free, energy = _fit(features, prior)
    loo_lat: dict[str, float] = {}
    loo_eng: dict[str, float] = {}
    for network in networks:
        train = [f for f in features if f.row.model != network]
        held = [f for f in features if f.row.model == network]
        lat_k, _, eng_k = _fit(train, prior)
        for f in held:
            predicted_s = predict_latency(f, lat_k)
            loo_lat[f.row.label] = predicted_s / f.row.latency_s - 1.0
            if eng_k is not None and f.row.energy_j is not None:
                loo_eng[f.row.label] = predict_energy(f, eng_k, predicted_s) / f.row.energy_j - 1.0
    train_err = {f.row.label: predict_latency(f, latency) / f.row.latency_s - 1.0 for f in features}
    return NetworkFit(latency, free, energy, list(rows), loo_lat, loo_eng, train_err)
