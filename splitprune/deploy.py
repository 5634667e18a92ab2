"""Price a board as it is deployed: runtime (eager, CUDA graph, TensorRT), precision and power mode.

One function, :func:`configure`, turns a fitted profile into the profile of one deployment; every
command prices through it, so the scaling rules live here and nowhere else:

- **Runtime.** A profile's cost tables describe the GPU kernels plus, for eager PyTorch, the CPU
  launch floors. ``eager`` keeps the floors; ``graph`` (a CUDA-graph replay) and ``tensorrt`` drop
  them. ``tensorrt`` also fuses kernels (:mod:`splitprune.fusion`, applied by ``annotate``) and applies
  ``runtimes.tensorrt`` where the profile has it (kernel speed, kernel overhead, one enqueue per
  inference).
- **Precision.** MAC slopes scale by the peak-rate ratio of the two precisions (tensor cores where the
  GPU has them for that precision) over ``precisions.P.efficiency``; bytes moved scale with the bytes
  per element. Dynamic energy per MAC scales like time per MAC unless the profile says otherwise.
- **Power mode.** Time bound by the GPU scales with the GPU clock, memory traffic with the EMC clock,
  CPU dispatch with the CPU clock; a mode that power-gates SMs divides the MAC rate and the tiles
  that run at once by the SMs it leaves on. Dynamic energy per operation scales with the GPU voltage squared
  (``DeviceSpec.voltage_ratio``); static power is ``idle_power_w`` plus the rest of the fitted mode's
  static power scaled by clock x voltage squared, unless the mode gives its own ``static_power_w``.
"""

from __future__ import annotations

from typing import Any

from .board import BYTES_PER_ELEMENT, MODES, PRECISIONS, BoardProfile
from .errors import ConfigError

__all__ = ["configure", "resolve_power_mode"]

_SLOPES = ("conv_per_mac", "linear_per_mac", "gemm_per_mac")


def resolve_power_mode(profile: BoardProfile, name: str | None) -> str:
    """The profile's name for power mode ``name`` (a key, an alias, or the ``nvpmodel`` number).

    Raises:
        ConfigError: The profile has no such mode.
    """
    if name is None or name == profile.board.power_mode:
        return profile.board.power_mode
    for key, mode in profile.power_modes.items():
        names = {key.lower(), *(a.lower() for a in mode.aliases)}
        if name.lower() in names or (mode.nvpmodel_id is not None and name == str(mode.nvpmodel_id)):
            return key
    known = ", ".join(profile.power_modes) or profile.board.power_mode
    raise ConfigError(f"board {profile.board.name!r} has no power mode {name!r}; use one of: {known}")


def configure(
    profile: BoardProfile, *, mode: str = "eager", precision: str | None = None, power_mode: str | None = None
) -> BoardProfile:
    """The profile of one deployment of ``profile`` (see the module docstring for the rules).

    Raises:
        ConfigError: Unknown mode, a precision the board cannot run or has no rate for, or an unknown
            power mode; each message names the fix.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}: use {', '.join(MODES)}")
    mode_key = resolve_power_mode(profile, power_mode)
    precision = precision or profile.board.precision
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "int8" and mode != "tensorrt":
        raise ConfigError("int8 needs a quantising runtime: use --mode tensorrt (or fp16/fp32)")
    if (mode, precision, mode_key) == (
        profile.board.runtime,
        profile.board.precision,
        profile.board.power_mode,
    ):
        return profile
    if profile.board.runtime != "eager":
        raise ConfigError(
            f"profile {profile.name!r} is already configured for {profile.board.runtime}; "
            "configure the profile as loaded (load_board) instead"
        )
    data = profile.model_dump(exclude_unset=True)
    notes: dict[str, str] = {}
    _apply_runtime(profile, data, mode, notes)
    _apply_precision(profile, data, precision, notes)
    _apply_power_mode(profile, data, mode_key, notes)
    data["board"] = {**data["board"], "runtime": mode, "precision": precision, "power_mode": mode_key}
    values = dict(profile.provenance.values)
    for key, note in notes.items():
        values.setdefault(key, note)
    data["provenance"] = {**data["provenance"], "values": values}
    return BoardProfile.model_validate(data)


def _tables(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return data["energy_j"], data["latency_s"]


def _scale(table: dict[str, Any], keys: tuple[str, ...], factor: float) -> None:
    for key in keys:
        if table.get(key) is not None:
            table[key] = table[key] * factor


def _apply_runtime(profile: BoardProfile, data: dict[str, Any], mode: str, notes: dict[str, str]) -> None:
    energy, latency = _tables(data)
    if mode == "eager":
        return
    latency["launch_floor"], latency["network_per_op"] = {}, 0.0
    notes["latency_s.launch_floor"] = f"set to none: {mode} replays kernels without per-op dispatch"
    notes["latency_s.network_per_op"] = f"set to 0: {mode} replays kernels without per-op dispatch"
    spec = profile.runtimes.get(mode)
    if spec is None:
        return
    for table in (energy, latency):
        _scale(table, _SLOPES, spec.compute_scale)
        _scale(table, ("memory_per_byte",), spec.memory_scale)
    if spec.kernel_overhead_s is not None:
        latency["static_per_layer"] = spec.kernel_overhead_s
    latency["per_inference"] = spec.per_inference_s
    notes["latency_s.per_inference"] = "runtimes.tensorrt.per_inference_s"


def _apply_precision(
    profile: BoardProfile, data: dict[str, Any], precision: str, notes: dict[str, str]
) -> None:
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
    time_ratio = rate_base / rate / efficiency
    energy_ratio = spec.energy_per_mac_scale if spec and spec.energy_per_mac_scale else time_ratio
    byte_ratio = BYTES_PER_ELEMENT[precision] / BYTES_PER_ELEMENT[base]
    energy, latency = _tables(data)
    _scale(latency, _SLOPES, time_ratio)
    _scale(energy, _SLOPES, energy_ratio)
    for table in (energy, latency):
        _scale(table, ("memory_per_byte",), byte_ratio)
    notes[f"precisions.{precision}"] = f"peak-rate ratio {base}/{precision} from [device]"


def _apply_power_mode(profile: BoardProfile, data: dict[str, Any], key: str, notes: dict[str, str]) -> None:
    if key == profile.board.power_mode or profile.device is None:
        return
    device, fitted, target = (
        profile.device,
        profile.power_modes[profile.board.power_mode],
        profile.power_modes[key],
    )
    sms = (target.sm_count or device.sm_count) / (fitted.sm_count or device.sm_count)
    gpu = target.gpu_clock_hz / fitted.gpu_clock_hz
    emc = target.emc_clock_hz / fitted.emc_clock_hz
    cpu = target.cpu_clock_hz / fitted.cpu_clock_hz
    volts2 = (device.voltage_ratio(target.gpu_clock_hz) / device.voltage_ratio(fitted.gpu_clock_hz)) ** 2
    energy, latency = _tables(data)
    _scale(latency, _SLOPES, 1.0 / (gpu * sms))
    _scale(latency, ("static_per_layer",), 1.0 / gpu)
    if latency.get("concurrent_tiles"):
        latency["concurrent_tiles"] = max(1, round(latency["concurrent_tiles"] * sms))
    _scale(latency, ("memory_per_byte",), 1.0 / emc)
    _scale(latency, ("network_per_op", "per_inference"), 1.0 / cpu)
    latency["launch_floor"] = {k: v / cpu for k, v in latency.get("launch_floor", {}).items()}
    _scale(energy, (*_SLOPES, "static_per_layer"), volts2)
    if target.static_power_w is not None:
        energy["static_power_w"] = target.static_power_w
    else:
        fitted_static = fitted.static_power_w or profile.energy_j.static_power_w
        dynamic = max(0.0, fitted_static - device.idle_power_w)
        energy["static_power_w"] = device.idle_power_w + dynamic * gpu * volts2
    notes[f"power_modes.{key}"] = f"clocks of power mode {key} against {profile.board.power_mode}"
