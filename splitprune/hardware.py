"""What a board profile knows of its hardware (schema 3): the GPU, its power modes, precisions, runtimes.

These tables let one fitted set of cost coefficients price every way the board is used
(:func:`splitprune.pricing.price`): the GPU's peak MAC rate per precision (CUDA cores and, where the
GPU has them, tensor cores) scales the MAC slopes to another precision; each nvpmodel power mode's
GPU, memory (EMC) and CPU clocks scale the time of the work each clock bounds; the GPU voltage, which
DVFS lowers with the clock, scales the dynamic energy per operation.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from .config import StrictModel

__all__ = ["DeviceSpec", "LaunchSpec", "PowerMode", "PrecisionSpec", "RuntimeSpec"]


class DeviceSpec(StrictModel):
    """The board's GPU, memory and CPU at the clocks the cost tables were fitted at.

    Attributes:
        sm_count: Streaming multiprocessors.
        macs_per_clock_per_sm: Peak multiply-accumulates per clock per SM on the CUDA cores, by precision
            (a precision missing here and in ``tensor_core_macs_per_clock_per_sm`` is not supported).
        tensor_core_macs_per_clock_per_sm: The same on tensor cores, by precision (empty: none).
        gpu_max_clock_hz: Highest GPU clock of any power mode (the top of the DVFS curve).
        gpu_voltage_floor: GPU voltage near zero clock as a fraction of its voltage at the highest clock
            (DVFS is taken as linear in between); dynamic energy per operation scales as voltage squared.
        idle_power_w: Module power with the GPU idle: the part of the static power no GPU clock changes.
        memory_bandwidth_bps: Peak DRAM bandwidth at the highest EMC clock, bytes per second.
    """

    sm_count: int = Field(ge=1)
    macs_per_clock_per_sm: dict[str, float]
    tensor_core_macs_per_clock_per_sm: dict[str, float] = Field(default_factory=dict)
    gpu_max_clock_hz: float = Field(gt=0)
    gpu_voltage_floor: float = Field(ge=0, le=1)
    idle_power_w: float = Field(ge=0)
    memory_bandwidth_bps: float = Field(gt=0)

    def peak_macs_per_clock_per_sm(self, precision: str) -> float | None:
        """Best MAC rate per clock per SM of ``precision`` (tensor cores where present), else None."""
        rates = [
            table[precision]
            for table in (self.tensor_core_macs_per_clock_per_sm, self.macs_per_clock_per_sm)
            if precision in table
        ]
        return max(rates) if rates else None

    def voltage_ratio(self, clock_hz: float) -> float:
        """GPU voltage at ``clock_hz`` relative to its voltage at :attr:`gpu_max_clock_hz`."""
        share = min(1.0, clock_hz / self.gpu_max_clock_hz)
        return self.gpu_voltage_floor + (1.0 - self.gpu_voltage_floor) * share


class PowerMode(StrictModel):
    """One nvpmodel power mode: the clock caps it sets and the cores it leaves online.

    Attributes:
        nvpmodel_id: The ``nvpmodel -m`` number (None where the mode is not an nvpmodel mode).
        aliases: Other names for it (``MAXN``, ``MAXQ``, ``MAXP``).
        gpu_clock_hz: GPU clock cap.
        emc_clock_hz: Memory (EMC) clock cap.
        cpu_clock_hz: CPU clock cap of the cluster that runs PyTorch.
        cpu_cores: CPU cores online.
        sm_count: SMs left on (a mode may power-gate TPCs); None: all of the device's.
        power_budget_w: The mode's nominal power budget (documentation; not used in pricing).
        static_power_w: Module power while a network runs, apart from the work (set only where it was
            measured or fitted; otherwise derived from the fitted mode's, see ``configure``).
    """

    nvpmodel_id: int | None = None
    aliases: list[str] = Field(default_factory=list)
    gpu_clock_hz: float = Field(gt=0)
    emc_clock_hz: float = Field(gt=0)
    cpu_clock_hz: float = Field(gt=0)
    cpu_cores: int = Field(ge=1)
    sm_count: int | None = Field(default=None, ge=1)
    power_budget_w: float | None = Field(default=None, gt=0)
    static_power_w: float | None = Field(default=None, ge=0)


class PrecisionSpec(StrictModel):
    """How a precision runs beside the peak-rate ratio of :class:`DeviceSpec`.

    Attributes:
        efficiency: Fraction of the precision's peak reached, relative to the fitted precision's
            fraction (1: the same share of a higher peak).
        energy_per_mac_scale: Dynamic energy per MAC relative to the fitted precision; None takes the
            time ratio (the GPU draws the same dynamic power while it computes faster).
    """

    efficiency: float = Field(default=1.0, gt=0, le=4)
    energy_per_mac_scale: float | None = Field(default=None, gt=0)


class LaunchSpec(StrictModel):
    """What one way of launching an engine costs, at the fitted power mode's clocks.

    Attributes:
        per_inference_s: CPU time per inference (``enqueueV3``, or one ``cudaGraphLaunch``).
        kernel_overhead_s: GPU time of every kernel apart from its work (replaces
            ``latency_s.static_per_layer``), None to keep the table's.
        source: Where the numbers come from (a publication, a fit, or "derived from ..."): required.
    """

    per_inference_s: float = Field(ge=0)
    kernel_overhead_s: float | None = Field(default=None, ge=0)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _finite(self) -> LaunchSpec:
        values = (self.per_inference_s, self.kernel_overhead_s or 0.0)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("launch costs must be finite")
        return self


class RuntimeSpec(StrictModel):
    """A runtime's kernels relative to the fitted ones (TensorRT's tuned, fused kernels).

    Attributes:
        compute_scale: Multiplies the MAC slopes (time and energy).
        memory_scale: Multiplies the per-byte costs.
        kernel_overhead_s: GPU time of every kernel apart from its work (replaces
            ``latency_s.static_per_layer``), None to keep the table's: the ``enqueue`` launch's
            unless ``launch.enqueue`` says otherwise.
        per_inference_s: CPU time to enqueue one inference (the ``enqueue`` launch's, likewise).
        launch: Costs per launch method (``enqueue``: one enqueue per inference, the default;
            ``cuda-graph``: a captured engine replayed), each with its source.
    """

    compute_scale: float = Field(default=1.0, gt=0)
    memory_scale: float = Field(default=1.0, gt=0)
    kernel_overhead_s: float | None = Field(default=None, ge=0)
    per_inference_s: float = Field(default=0.0, ge=0)
    launch: dict[Literal["enqueue", "cuda-graph"], LaunchSpec] = Field(default_factory=dict)

    def launch_costs(self, launch: str) -> LaunchSpec | None:
        """The costs of ``launch`` (``enqueue`` falls back to the runtime's own numbers), else None."""
        if launch in self.launch:
            return self.launch[launch]  # type: ignore[index]
        if launch == "enqueue":
            return LaunchSpec(per_inference_s=self.per_inference_s, kernel_overhead_s=self.kernel_overhead_s,
                              source="runtimes.tensorrt (per_inference_s, kernel_overhead_s)")
        return None

    @model_validator(mode="after")
    def _finite(self) -> RuntimeSpec:
        if not all(math.isfinite(v) for v in (self.compute_scale, self.memory_scale, self.per_inference_s)):
            raise ValueError("runtime scales must be finite")
        return self
