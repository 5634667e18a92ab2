"""The one pricing path: :func:`price` turns a traced graph and a :class:`~.deploy.Deployment` into costs.

Two steps, both here and nowhere else:

1. **Coefficients of the deployment** (:func:`deployed_profile`). A profile's cost tables are fitted
   at one runtime, precision and power mode. Every coefficient scales with the resources that bound
   it, listed as data in :data:`SCALES` (coefficient -> resources, applied in order); the factor of
   each resource for a deployment comes from :func:`resource_factors`:

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
   profile's ``runtimes.tensorrt`` for its launch method (``enqueue`` or ``cuda-graph``), and static
   power is ``idle_power_w`` plus the fitted mode's rest scaled by GPU clock x voltage squared, unless
   the mode states its own ``static_power_w``.

2. **Costs of the graph** (:func:`price`). Outside TensorRT every op is its own kernel; in TensorRT
   kernels fuse (:mod:`splitprune.fusion`) and a fused kernel is priced on its anchor. Latency and
   energy are two explicit formulas (:meth:`~.board.CostModel.latency_cost`,
   :meth:`~.board.CostModel.energy_cost`: static power times the op's latency plus its work); the
   per-inference cost (TensorRT's enqueue) is charged on the first input.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .board import (
    BYTES_PER_ELEMENT,
    DISPATCH_ONLY_KINDS,
    FREE_KINDS,
    BoardProfile,
    CostModel,
    GemmShape,
    gemm_shape,
)
from .errors import ConfigError

if TYPE_CHECKING:
    from .deploy import Deployment
    from .graph import LayerGraph

__all__ = [
    "SCALES", "MetricPricer", "NodeCosts", "deployed_profile", "op_costs", "price", "resource_factors",
]

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


@dataclass(frozen=True)
class NodeCosts:
    """What one deployment costs per node of a graph.

    Attributes:
        energy_j: Device energy of every node, J (fused members cost 0; the anchor pays).
        latency_s: Device latency of every node, s.
        kernel: The node that pays for the GPU kernel each node runs in, None where none runs.
        board: The deployed profile's name.
    """

    energy_j: Mapping[str, float]
    latency_s: Mapping[str, float]
    kernel: Mapping[str, str | None]
    board: str

    @property
    def total_energy_j(self) -> float:
        """Energy of one pass over the whole graph, J."""
        return float(sum(self.energy_j.values()))

    @property
    def total_latency_s(self) -> float:
        """Latency of one pass over the whole graph, s."""
        return float(sum(self.latency_s.values()))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {"board": self.board, "energy_j": dict(self.energy_j), "latency_s": dict(self.latency_s),
                "kernel": dict(self.kernel)}


def op_costs(tables: Any, attrs: Mapping[str, Any], *, mem_bytes: int | None = None) -> tuple[float, float]:
    """``(energy_j, latency_s)`` of one op (graph node attributes) under ``tables``'s two cost tables.

    ``tables`` is anything with ``energy_j`` and ``latency_s`` :class:`~.board.CostModel` s (a board's
    deployed profile, a server profile); ``mem_bytes`` overrides the node's own (a fused kernel's).
    """
    kind = attrs["kind"]
    sizes = {
        "macs": attrs["macs"],
        "mem_bytes": attrs["mem_bytes"] if mem_bytes is None else mem_bytes,
        "kernels": attrs["kernels"],
        "dispatches": attrs.get("dispatches", 1),
        "shape": gemm_shape(kind, attrs.get("output_shapes", [])),
    }
    latency = tables.latency_s.latency_cost(kind, **sizes)
    return tables.energy_j.energy_cost(kind, latency_s=latency, **sizes), latency


@dataclass(frozen=True)
class MetricPricer:
    """One metric of :func:`price` for single ops at any size (the pruner's channel model).

    Attributes:
        profile: The deployed profile.
        metric: ``energy_j`` or ``latency_s``.
    """

    profile: BoardProfile
    metric: str = "energy_j"

    @classmethod
    def of(cls, board: Deployment | BoardProfile, metric: str = "energy_j") -> MetricPricer:
        """The pricer of ``metric`` for a deployment (a bare profile is deployed as it is)."""
        from .deploy import Deployment

        if metric not in ("energy_j", "latency_s"):
            raise ValueError(f"metric must be energy_j or latency_s, got {metric!r}")
        return cls(Deployment.coerce(board).profile, metric)

    @property
    def fused(self) -> bool:
        """Whether kernels fuse (TensorRT): fused members cost nothing, the anchor pays the kernel."""
        return self.profile.board.runtime == "tensorrt"

    @property
    def conv_kernel_granularity(self) -> int:
        """The board's kernel tile, in output channels."""
        return self.table.conv_kernel_granularity

    @property
    def table(self) -> CostModel:
        """The cost table of the metric."""
        return self.profile.energy_j if self.metric == "energy_j" else self.profile.latency_s

    @property
    def per_inference(self) -> float:
        """The per-inference cost (TensorRT's enqueue) in the metric's unit, charged once."""
        seconds = self.profile.latency_s.per_inference
        if self.metric == "latency_s":
            return seconds
        return self.profile.energy_j.per_inference + self.profile.energy_j.static_power_w * seconds

    def __call__(
        self, kind: str, *, macs: int, mem_bytes: int, kernels: int = 0, dispatches: int = 1,
        shape: GemmShape | None = None,
    ) -> float:
        """The metric of one op (kernel) of these sizes."""
        sizes: dict[str, Any] = {"macs": macs, "mem_bytes": mem_bytes, "kernels": kernels,
                                 "dispatches": dispatches, "shape": shape}
        latency = self.profile.latency_s.latency_cost(kind, **sizes)
        if self.metric == "latency_s":
            return latency
        return self.profile.energy_j.energy_cost(kind, latency_s=latency, **sizes)


def price(graph: LayerGraph, deployment: Deployment | BoardProfile, *, boundary: Collection[str] | None = None
          ) -> NodeCosts:
    """Costs of every node of ``graph`` deployed as ``deployment`` (the graph is not modified).

    Args:
        graph: A traced graph (at the deployment's batch size: tracing fixes the shapes).
        deployment: The deployment (a bare profile is deployed as it is).
        boundary: The device side of a split: TensorRT builds two engines, no kernel spans the cut.

    Raises:
        ConfigError: A cost table holds placeholders (``provenance.unmeasured``).
    """
    from .deploy import Deployment

    profile = Deployment.coerce(deployment).profile
    if profile.provenance.unmeasured:
        table = profile.provenance.unmeasured[0]
        raise ConfigError(
            f"board {profile.board.name!r} has no measured {table} table (placeholder zeros); "
            "calibrate it with a power sensor or use a profile that has one"
        )
    return _price(graph, profile, boundary)


def price_placeholders(
    graph: LayerGraph, profile: BoardProfile, *, boundary: Collection[str] | None = None
) -> NodeCosts:
    """:func:`price` that accepts placeholder tables (their zeros stay zeros); for calibration reports."""
    return _price(graph, profile, boundary)


def _price(graph: LayerGraph, profile: BoardProfile, boundary: Collection[str] | None) -> NodeCosts:
    nodes = graph.nodes
    energy = dict.fromkeys(graph.order, 0.0)
    latency = dict.fromkeys(graph.order, 0.0)
    kernel: dict[str, str | None] = dict.fromkeys(graph.order)
    if profile.board.runtime == "tensorrt":
        from .fusion import fuse

        for anchor, fused in fuse(graph, boundary=boundary).items():
            energy[anchor], latency[anchor] = op_costs(profile, nodes[anchor], mem_bytes=fused.mem_bytes)
            for member in fused.members:
                kernel[member] = anchor
    else:
        for name in graph.order:
            attrs = nodes[name]
            energy[name], latency[name] = op_costs(profile, attrs)
            launches = attrs["kind"] not in FREE_KINDS and attrs["kind"] not in DISPATCH_ONLY_KINDS
            kernel[name] = name if launches else None
    if graph.inputs:
        first = graph.inputs[0]
        enqueue_s = profile.latency_s.per_inference
        latency[first] += enqueue_s
        energy[first] += profile.energy_j.per_inference + profile.energy_j.static_power_w * enqueue_s
    return NodeCosts(energy, latency, kernel, profile.name)


# -- coefficients of a deployment ----------------------------------------------------------------


def deployed_profile(deployment: Deployment) -> BoardProfile:
    """The profile of ``deployment``: every coefficient scaled per :data:`SCALES` (module docstring).

    Raises:
        ConfigError: A precision the board has no MAC rate for, or a launch method without costs.
    """
    base = deployment.base
    info = base.board
    if (deployment.mode, deployment.precision, deployment.power_mode) == (
        info.runtime, info.precision, info.power_mode
    ) and deployment.clocks is None and deployment.launch in (None, _runtime_default(base, deployment.mode)):
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


def _runtime_default(profile: BoardProfile, mode: str) -> str | None:
    return "enqueue" if mode == "tensorrt" else None


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
    """TensorRT's per-kernel and per-inference costs for the launch method, at the fitted clocks."""
    spec = deployment.base.runtimes.get(deployment.mode)
    if spec is None or deployment.mode != "tensorrt":
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


def scaled_table(table: CostModel, factor: float) -> CostModel:  # pragma: no cover - helper for callers
    """``table`` with every per-op coefficient times ``factor`` (a whole-table scaling)."""
    data = table.model_dump(exclude_unset=True)
    for key in (*_SLOPES, "memory_per_byte", "static_per_layer"):
        _scale(data, key, factor)
    return CostModel.model_validate(data)
