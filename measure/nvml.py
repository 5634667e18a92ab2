"""GPU power through NVML (``nvidia-ml-py``), for desktop and data-centre GPUs.

On Volta and newer, energy comes from the GPU's total-energy counter (millijoules since the driver
loaded). The counter only changes at ticks (about 11 a second on an H100), so the sampler reads it every
``interval_s`` along with the power, and a window's energy is taken between the first and the last tick
inside its span: the window's edges sit on ticks and carry no quantisation. Older GPUs have no counter,
so the sampled power is integrated (trapezoid). ``pynvml`` is imported lazily so that ``measure`` works
without it; the sampling process opens NVML itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SensorError
from .sampler import Reading
from .sensors import Clock, SampledSensor

__all__ = ["NvmlReader", "NvmlSensor"]


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise SensorError(
            "nvidia-ml-py is not installed: pip install nvidia-ml-py, or use --sensor none"
        ) from None
    return pynvml


@dataclass
class NvmlReader:
    """Picklable reader of one GPU for the sampling process.

    Attributes:
        index: NVML device index.
        rail: Label of the GPU's rail (``gpuN``).
        counter: Whether to read the total-energy counter too.
    """

    index: int
    rail: str
    counter: bool

    def __post_init__(self) -> None:
        self._nvml: Any = None
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"index": self.index, "rail": self.rail, "counter": self.counter}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def open(self) -> None:
        """Initialise NVML in this process and open the GPU."""
        self._nvml = _import_pynvml()
        self._nvml.nvmlInit()
        self._handle = self._nvml.nvmlDeviceGetHandleByIndex(self.index)

    def read(self) -> Reading:
        """GPU power now ({gpuN: W}) and the energy counter in joules (None without one)."""
        power_w = self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3
        counter_j = (
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1e3 if self.counter else None
        )
        return {self.rail: power_w}, counter_j

    def close(self) -> None:
        """Shut NVML down in this process."""
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
            self._nvml = None


class NvmlSensor(SampledSensor):
    """Power and energy of one NVIDIA GPU through NVML."""

    name = "nvml"

    def __init__(
        self,
        *,
        index: int = 0,
        interval_s: float = 0.002,
        clock: Clock | None = None,
        sampler: str = "auto",
    ) -> None:
        """Open GPU ``index`` and check whether it has an energy counter.

        Args:
            index: NVML device index.
            interval_s: Time between readings in seconds (locates counter ticks to within this).
            clock: Monotonic clock in seconds (injectable for tests; implies the thread sampler).
            sampler: ``process``, ``thread`` or ``auto`` (see :class:`~measure.sensors.SampledSensor`).

        Raises:
            SensorError: nvidia-ml-py is missing or NVML cannot open the GPU.
        """
        super().__init__(interval_s=interval_s, clock=clock, sampler=sampler)
        pynvml = _import_pynvml()
        self._nvml: Any = pynvml
        self.index = index
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
            self.has_counter = True
        except pynvml.NVMLError:
            self.has_counter = False

    @property
    def uses_energy_counter(self) -> bool:
        """Whether energy comes from the total-energy counter (Volta and newer)."""
        return self.has_counter

    def describe(self) -> dict[str, str]:
        """Facts about the sensor for the run header."""
        info = super().describe()
        info["sensor_energy_source"] = (
            "total-energy counter" if self.has_counter else "sampled power (trapezoid)"
        )
        return info

    def read_power_w(self) -> dict[str, float]:
        """Read the GPU's power now ({gpuN: W})."""
        return {self.main_rail: self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3}

    def read_counter_j(self) -> float | None:
        """Read the total-energy counter in joules (None without one)."""
        if not self.has_counter:
            return None
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) / 1e3

    def reader(self) -> NvmlReader:
        """This GPU as a picklable reader for the sampling process."""
        return NvmlReader(self.index, self.main_rail, self.has_counter)

    def close(self) -> None:
        """Stop sampling and shut NVML down."""
        super().close()
        if getattr(self, "_nvml", None) is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
            self._nvml = None
