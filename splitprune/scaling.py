"""Coefficients of a deployment: :func:`deployed_profile` scales a fitted profile to one deployment.

A profile's cost tables are fitted at one runtime, precision and power mode. Every coefficient scales
with the resources that bound it, listed as data in :data:`SCALES` (coefficient -> resources, applied
in order); the factor of each resource for a deployment comes from :func:`resource_factors`:

- ``runtime_compute`` / ``runtime_memory``: a runtime's kernels against the fitted ones
  (``runtimes.R.compute_scale`` / ``memory_scale``);
- ``cpu_dispatch``: 0 outside eager PyTorch (a CUDA graph or an engine replays kernels without
  per-op dispatch), else 1;
- ``mac_time`` / ``mac_energy``: the peak MAC-rate ratio of the two precisions per SM and clock
  (tensor cores where present) over ``precisions.P.efficiency`` (energy: ``energy_per_mac_scale``
  where set);
- ``bytes_per_element``: bytes per element of the precision over the fitted one's;
- ``gpu_clock_x_sms``: time bound by compute scales with 1 / (GPU clock x SMs on);
- ``gpu_clock``: a kernel's fixed GPU time scales with 1 / GPU clock;
- ``emc_clock``: memory traffic with 1 / EMC clock;
- ``cpu_clock``: CPU dispatch and TensorRT's enqueue with 1 / CPU clock;
- ``gpu_volts2``: dynamic energy per operation with the GPU voltage squared (DVFS).

Beside the scalings, a TensorRT deployment takes its per-kernel and per-inference costs from the
profile's ``runtimes.tensorrt`` for its launch method (``enqueue`` or ``cuda-graph``); a graph
deployment drops the eager profile's ``latency_s.per_inference`` (eager PyTorch's host time per
inference: a replayed graph does not walk the module tree) for ``runtimes.graph``'s, if any; and static
power is ``idle_power_w`` plus the fitted mode's rest scaled by GPU clock x voltage squared, unless
the mode states its own ``static_power_w``.

:func:`splitprune.pricing.price` prices a graph with these coefficients; nothing else scales them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .board import BYTES_PER_ELEMENT, BoardProfile
from .errors import ConfigError

if TYPE_CHECKING:
    from .deploy import Deployment

__all__ = ["SCALES", "deployed_profile", "resource_factors"]

_SLOPES = ("conv_per_mac", "linear_per_mac", "gemm_per_mac")

SCALES: dict[tuple[str, str], tuple[str, ...]] = {
    **{("latency_s", s): ("runtime_compute", "mac_time", "gpu_clock_x_sms") for s in _SLOPES},
    **{("energy_j", s): ("runtime_compute", "mac_energy", "gpu_volts2") for s in _SLOPES},
    ("latency_s", "memory_per_byte"): ("runtime_memory", "bytes_per_element", "emc_clock"),
    ("energy_j", "memory_per_byte"): ("runtime_memory", "bytes_per_element"),
    ("latency_s", "static_per_layer"): ("gpu_clock",),
    ("energy_j", "static_per_layer"): ("gpu_volts2",),
    ("latency_s", "network_per_op"): ("cpu_dispatch", "cpu_clock"),
    ("latency_s", "launch_floor"): ("cpu_dispatch", "cpu_clock"),
    ("latency_s", "per_inference"): ("cpu_clock",),
}
"""Coefficient ``(table, key)`` -> the resources that scale it, in the order they apply."""


def deployed_profile(deployment: Deployment) -> BoardProfile:
    """The profile of ``deployment``: every coefficient scaled per :data:`SCALES` (module docstring).

    Raises:
        ConfigError: A precision the board has no MAC rate for, or a launch method without costs.
    """
    base = deployment.base
    info = base.board
    if (deployment.mode, deployment.precision, deployment.power_mode) == (
        info.runtime, info.precision, info.power_mode
    ) and deployment.clocks is None and deployment.launch in (None, "enqueue"):
        return base
    if info.runtime != "eager":
        raise ConfigError(
            f"profile {base.name!r} is already configured for {info.runtime}; "
            "configure the profile as loaded (load_board) instead"
        )
    factors, notes = resource_factors(deployment)
    data = base.model_dump(exclude_unset=True)
    _runtime_costs(deployment, data, notes)  # the launch method's costs, at the fitted clocks
    for (table, key), resources in SCALES.items():
        for resource in resources:
            _scale(data[table], key, factors[resource])
    _power_tables(deployment, data, factors)
    if deployment.clocks is not None:  # the explicit clocks become the deployed profile's mode
        data["power_modes"] = {**data.get("power_modes", {}),
                               deployment.power_mode: deployment.clocks.model_dump()}
    data["board"] = {**data["board"], "runtime": deployment.mode, "precision": deployment.precision,
                     "power_mode": deployment.power_mode}
    values = dict(base.provenance.values)
    for key, note in notes.items():
        values.setdefault(key, note)
    data["provenance"] = {**data["provenance"], "values": values}
    return BoardProfile.model_validate(data)


def _scale(table: dict[str, Any], key: str, factor: float) -> None:
    if factor == 1.0:
        return
    value = table.get(key)
    if isinstance(value, dict):
        table[key] = {} if factor == 0.0 else {k: v * factor for k, v in value.items()}
    elif value is not None:
        table[key] = value * factor


_FACTORS: list[Callable[[Deployment, dict[str, float], dict[str, str]], None]] = []


def _factor(fn: Callable[[Deployment, dict[str, float], dict[str, str]], None]) -> Callable[..., None]:
    _FACTORS.append(fn)
    return fn


def resource_factors(deployment: Deployment) -> tuple[dict[str, float], dict[str, str]]:
    """The factor of every resource of :data:`SCALES` for ``deployment``, and provenance notes."""
    factors = dict.fromkeys({r for rs in SCALES.values() for r in rs}, 1.0)
    factors["sm_ratio"] = 1.0
    notes: dict[str, str] = {}
    for fn in _FACTORS:
        fn(deployment, factors, notes)
    return factors, notes


@_factor
def _runtime(deployment: Deployment, factors: dict[str, float], notes: dict[str, str]) -> None:
    if deployment.mode == "eager":
        return
    factors["cpu_dispatch"] = 0.0
    why = f"{deployment.mode} replays kernels without per-op dispatch"
    notes["latency_s.launch_floor"] = f"set to none: {why}"
    notes["latency_s.network_per_op"] = f"set to 0: {why}"
    spec = deployment.base.runtimes.get(deployment.mode)
    if spec is not None:
        factors["runtime_compute"], factors["runtime_memory"] = spec.compute_scale, spec.memory_scale


@_factor
def _precision(deployment: Deployment, factors: dict[str, float], notes: dict[str, str]) -> None:
    profile, precision = deployment.base, deployment.precision
    base = profile.board.precision
    if precision == base:
        return
    device = profile.device
    rate_base = device.peak_macs_per_clock_per_sm(base) if device else None
    rate = device.peak_macs_per_clock_per_sm(precision) if device else None
    if rate_base is None or rate is None:
        raise ConfigError(
            f"board {profile.board.name!r} has no {precision} MAC rate; use --precision {base} "
            "or a profile whose [device] lists it"
        )
    spec = profile.precisions.get(precision)
    efficiency = spec.efficiency if spec else 1.0
    factors["mac_time"] = rate_base / rate / efficiency
    factors["mac_energy"] = (
        spec.energy_per_mac_scale if spec and spec.energy_per_mac_scale else factors["mac_time"]
    )
    factors["bytes_per_element"] = BYTES_PER_ELEMENT[precision] / BYTES_PER_ELEMENT[base]
    notes[f"precisions.{precision}"] = f"peak-rate ratio {base}/{precision} from [device]"


@_factor
def _clocks(deployment: Deployment, factors: dict[str, float], notes: dict[str, str]) -> None:
    profile = deployment.base
    target = deployment.power
    if profile.device is None or target is None or (
        deployment.clocks is None and deployment.power_mode == profile.board.power_mode
    ):
        return
    device, fitted = profile.device, profile.power_modes[profile.board.power_mode]
    sms = (target.sm_count or device.sm_count) / (fitted.sm_count or device.sm_count)
    gpu = target.gpu_clock_hz / fitted.gpu_clock_hz
    volts = device.voltage_ratio(target.gpu_clock_hz) / device.voltage_ratio(fitted.gpu_clock_hz)
    factors.update(
        gpu_clock_x_sms=1.0 / (gpu * sms), gpu_clock=1.0 / gpu,
        emc_clock=1.0 / (target.emc_clock_hz / fitted.emc_clock_hz),
        cpu_clock=1.0 / (target.cpu_clock_hz / fitted.cpu_clock_hz),
        gpu_volts2=volts**2, sm_ratio=sms, gpu_ratio=gpu,
    )
    what = f"clocks of power mode {deployment.power_mode}"
    if deployment.clocks is not None:
        what = "explicit clocks"
    notes[f"power_modes.{deployment.power_mode}"] = f"{what} against {profile.board.power_mode}"


def _runtime_costs(deployment: Deployment, data: dict[str, Any], notes: dict[str, str]) -> None:
    """TensorRT's per-kernel and per-inference costs for the launch method, at the fitted clocks.

    Outside eager PyTorch, the eager per-inference host time never applies: the runtime's own (its
    ``per_inference_s``) or none replaces it.
    """
    spec = deployment.base.runtimes.get(deployment.mode)
    if deployment.mode == "eager":
        return
    if deployment.mode != "tensorrt" or spec is None:
        if data["latency_s"].get("per_inference"):
            data["latency_s"]["per_inference"] = spec.per_inference_s if spec is not None else 0.0
            notes["latency_s.per_inference"] = (
                f"runtimes.{deployment.mode}" if spec is not None
                else f"set to 0: eager PyTorch's per-inference host time; {deployment.mode} runs without it"
            )
        return
    launch = deployment.launch or "enqueue"
    costs = spec.launch_costs(launch)
    if costs is None:
        raise ConfigError(
            f"board {deployment.base.board.name!r} has no runtimes.tensorrt.launch.{launch} costs; "
            f"use --launch enqueue or add a [runtimes.tensorrt.launch.{launch}] table with its source"
        )
    latency = data["latency_s"]
    if costs.kernel_overhead_s is not None:
        latency["static_per_layer"] = costs.kernel_overhead_s
    latency["per_inference"] = costs.per_inference_s
    notes["latency_s.per_inference"] = f"runtimes.tensorrt ({launch} launch)"


def _power_tables(deployment: Deployment, data: dict[str, Any], factors: dict[str, float]) -> None:
    """The static power and the tiles that run at once, in the deployment's power mode."""
    profile = deployment.base
    target = deployment.power
    if profile.device is None or target is None or factors.get("gpu_ratio") is None:
        return
    latency, energy = data["latency_s"], data["energy_j"]
    if latency.get("concurrent_tiles"):
        latency["concurrent_tiles"] = max(1, round(latency["concurrent_tiles"] * factors["sm_ratio"]))
    if target.static_power_w is not None:
        energy["static_power_w"] = target.static_power_w
    else:
        device, fitted = profile.device, profile.power_modes[profile.board.power_mode]
        fitted_static = fitted.static_power_w or profile.energy_j.static_power_w
        dynamic = max(0.0, fitted_static - device.idle_power_w)
        scale = factors["gpu_ratio"] * factors["gpu_volts2"]
        energy["static_power_w"] = device.idle_power_w + dynamic * scale
