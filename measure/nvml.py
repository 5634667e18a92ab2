"""GPU power through NVML (``nvidia-ml-py``), for desktop and data-centre GPUs.

On Volta and newer, energy comes from the GPU's total-energy counter (millijoules since the driver
loaded), read at both ends of the window; power is still sampled for the mean and the sample count.
Older GPUs have no counter, so the sampled power is integrated (trapezoid). ``pynvml`` is imported
lazily so that ``measure`` works without it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from .errors import SensorError
from .sensors import Clock, Measurement, SampledSensor

__all__ = ["NvmlSensor"]


class NvmlSensor(SampledSensor):
    """Power and energy of one NVIDIA GPU through NVML."""

    name = "nvml"

    def __init__(self, *, index: int = 0, interval_s: float = 0.01, clock: Clock = time.perf_counter) -> None:
        """Open GPU ``index`` and check whether it has an energy counter.

        Args:
            index: NVML device index.
            interval_s: Time between power samples in seconds.
            clock: Monotonic clock in seconds (injectable for tests).

        Raises:
            SensorError: nvidia-ml-py is missing or NVML cannot open the GPU.
        """
        super().__init__(interval_s=interval_s, clock=clock)
        try:
            import pynvml
        except ImportError:
            raise SensorError(
                "nvidia-ml-py is not installed: pip install nvidia-ml-py, or use --sensor none"
            ) from None
        self._nvml: Any = pynvml
        self.main_rail = f"gpu{index}"
        try:
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.read_power_w()
        except pynvml.NVMLError as exc:
            raise SensorError(
                f"NVML cannot read GPU {index} ({exc}); check the NVIDIA driver or use --sensor none"
            ) from None
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self.uses_energy_counter = True
        except pynvml.NVMLError:
            self.uses_energy_counter = False
        self._counter_start_mj = 0.0

    def describe(self) -> dict[str, str]:
        """Facts about the sensor for the run header."""
        info = super().describe()
        info["sensor_energy_source"] = (
            "total-energy counter" if self.uses_energy_counter else "sampled power (trapezoid)"
        )
        return info

    def _counter_mj(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def read_power_w(self) -> dict[str, float]:
        """Read the GPU's power now ({gpuN: W})."""
        return {self.main_rail: self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3}

    def begin_window(self) -> None:
        """Read the energy counter (if any) and start sampling."""
        if self.uses_energy_counter:
            self._counter_start_mj = self._counter_mj()
        super().begin_window()

    def end_window(self) -> Measurement:
        """Stop sampling; with a counter, energy is the counter difference."""
        sampled = super().end_window()
        if not self.uses_energy_counter:
            return sampled
        energy_j = (self._counter_mj() - self._counter_start_mj) / 1e3
        mean_power_w = energy_j / sampled.duration_s if sampled.duration_s > 0 else float("nan")
        return dataclasses.replace(
            sampled,
            energy_j=energy_j,
            mean_power_w=mean_power_w,
            rail_energy_j={self.main_rail: energy_j},
        )

    def close(self) -> None:
        """Stop sampling and shut NVML down."""
        super().close()
        if getattr(self, "_nvml", None) is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
            self._nvml = None
