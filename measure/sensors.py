"""The power-sensor interface, the sampling thread shared by real sensors, and sensor selection.

Every sensor measures windows: ``begin_window()`` ... work ... ``end_window()`` returns a
:class:`Measurement`. Sensors that read power (INA3221 sysfs, jtop, NVML) sample it in a background
thread, timestamp every sample themselves and integrate the samples with the trapezoid rule; a sample is
also taken synchronously when the window opens and when it closes, so the integral covers exactly the
window. :class:`NullSensor` measures time only.

Concrete sensors live in :mod:`measure.ina3221`, :mod:`measure.jtop` and :mod:`measure.nvml`;
:func:`detect_sensor` and :func:`make_sensor` choose one.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar

from .errors import SensorError

__all__ = [
    "SENSOR_NAMES",
    "Measurement",
    "NullSensor",
    "PowerSensor",
    "SampledSensor",
    "detect_sensor",
    "integrate_trapezoid",
    "make_sensor",
]

SENSOR_NAMES = ("auto", "none", "ina3221", "jtop", "nvml")

Clock = Callable[[], float]


@dataclass(frozen=True)
class Measurement:
    """What one window measured.

    Attributes:
        energy_j: Energy of the sensor's main rail (module total on a Jetson, the GPU for NVML) over the
            window in joules; ``None`` for sensors that measure time only.
        duration_s: Window length in seconds (from the sensor's own clock).
        mean_power_w: ``energy_j / duration_s`` in watts; ``None`` without energy.
        samples: Number of power samples in the window, both edges included (0 for time-only sensors).
        rail_energy_j: Energy in joules of every rail the sensor read (label -> J), main rail included.
    """

    energy_j: float | None
    duration_s: float
    mean_power_w: float | None
    samples: int
    rail_energy_j: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return asdict(self)


def integrate_trapezoid(times_s: list[float], values: list[float]) -> float:
    """Integrate ``values`` over ``times_s`` with the trapezoid rule (0 for fewer than two samples)."""
    total = 0.0
    for i in range(1, len(times_s)):
        total += 0.5 * (values[i] + values[i - 1]) * (times_s[i] - times_s[i - 1])
    return total


class PowerSensor(ABC):
    """A source of per-window energy (or time only), used as a context manager or closed explicitly.

    Attributes:
        name: Short name as ``--sensor`` spells it.
        measures_energy: False for time-only sensors.
        interval_s: Sampling interval in seconds (0 for time-only sensors).
    """

    name: ClassVar[str] = "abstract"
    measures_energy: ClassVar[bool] = True
    interval_s: float = 0.0

    @abstractmethod
    def begin_window(self) -> None:
        """Open a measurement window now."""

    @abstractmethod
    def end_window(self) -> Measurement:
        """Close the window opened by :meth:`begin_window` and return what it measured."""

    def describe(self) -> dict[str, str]:
        """Facts about the sensor for the run header (name, rails, interval)."""
        return {"sensor": self.name, "sensor_interval_s": str(self.interval_s)}

    def close(self) -> None:  # noqa: B027 - optional hook, most sensors hold nothing
        """Release the sensor's resources (idempotent)."""

    def __enter__(self) -> PowerSensor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullSensor(PowerSensor):
    """Time only: for machines without a power sensor (latency calibration)."""

    name = "none"
    measures_energy = False

    def __init__(self, *, clock: Clock = time.perf_counter) -> None:
        """Create the sensor.

        Args:
            clock: Monotonic clock in seconds (injectable for tests).
        """
        self._clock = clock
        self._start_s: float | None = None

    def begin_window(self) -> None:
        """Open a window now."""
        self._start_s = self._clock()

    def end_window(self) -> Measurement:
        """Close the window and return its duration."""
        if self._start_s is None:
            raise SensorError("end_window() without begin_window(); open a window first")
        duration_s = self._clock() - self._start_s
        self._start_s = None
        return Measurement(energy_j=None, duration_s=duration_s, mean_power_w=None, samples=0)


class SampledSensor(PowerSensor):
    """Base of sensors that read instantaneous power: a background thread samples and integrates.

    Subclasses implement :meth:`read_power_w` and set :attr:`main_rail`.
    """

    main_rail: str = ""

    def __init__(self, *, interval_s: float, clock: Clock = time.perf_counter) -> None:
        """Set up sampling.

        Args:
            interval_s: Time between background samples in seconds.
            clock: Monotonic clock in seconds used to timestamp samples (injectable for tests).
        """
        if not interval_s > 0:
            raise SensorError(f"sensor interval must be positive, got {interval_s} s")
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._times_s: list[float] = []
        self._powers_w: list[dict[str, float]] = []
        self._error: BaseException | None = None

    @abstractmethod
    def read_power_w(self) -> dict[str, float]:
        """Read the instantaneous power of every rail now (label -> W); must include the main rail."""

    def rails(self) -> list[str]:
        """Labels of the rails this sensor reads, main rail first."""
        return [self.main_rail]

    def describe(self) -> dict[str, str]:
        """Facts about the sensor for the run header."""
        info = super().describe()
        info["sensor_rails"] = ",".join(self.rails())
        info["sensor_main_rail"] = self.main_rail
        return info

    def _sample(self) -> None:
        with self._lock:
            t_s = self._clock()
            reading = self.read_power_w()
            self._times_s.append(t_s)
            self._powers_w.append(reading)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except BaseException as exc:  # reported by end_window
                self._error = exc
                return

    def begin_window(self) -> None:
        """Take the first sample and start the sampling thread."""
        if self._thread is not None:
            raise SensorError("begin_window() while a window is open; call end_window() first")
        self._times_s, self._powers_w, self._error = [], [], None
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-sampler", daemon=True)
        self._thread.start()

    def end_window(self) -> Measurement:
        """Stop sampling, take the last sample and integrate every rail over the window."""
        if self._thread is None:
            raise SensorError("end_window() without begin_window(); open a window first")
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise SensorError(f"{self.name}: reading power failed ({self._error})") from None
        self._sample()
        times_s = self._times_s
        rail_energy_j = {
            rail: integrate_trapezoid(times_s, [p.get(rail, math.nan) for p in self._powers_w])
            for rail in self._powers_w[0]
        }
        duration_s = times_s[-1] - times_s[0]
        energy_j = rail_energy_j.get(self.main_rail, math.nan)
        mean_power_w = energy_j / duration_s if duration_s > 0 else math.nan
        return Measurement(
            energy_j=energy_j,
            duration_s=duration_s,
            mean_power_w=mean_power_w,
            samples=len(times_s),
            rail_energy_j=rail_energy_j,
        )

    def close(self) -> None:
        """Stop a window left open."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


def make_sensor(name: str, *, sysfs_root: Path = Path("/sys"), gpu_index: int = 0) -> PowerSensor:
    """Build the sensor ``--sensor`` names (``auto`` detects one).

    Args:
        name: One of :data:`SENSOR_NAMES`.
        sysfs_root: Directory standing for ``/sys`` (INA3221 discovery).
        gpu_index: NVML device index.

    Raises:
        SensorError: Unknown name, or the named sensor is not usable here.
    """
    if name == "auto":
        return detect_sensor(sysfs_root=sysfs_root, gpu_index=gpu_index)
    if name == "none":
        return NullSensor()
    if name == "ina3221":
        from .ina3221 import Ina3221Sensor

        return Ina3221Sensor(sysfs_root=sysfs_root)
    if name == "jtop":
        from .jtop_sensor import JtopSensor

        return JtopSensor()
    if name == "nvml":
        from .nvml import NvmlSensor

        return NvmlSensor(index=gpu_index)
    raise SensorError(f"unknown sensor {name!r}: use one of {', '.join(SENSOR_NAMES)}")


def detect_sensor(*, sysfs_root: Path = Path("/sys"), gpu_index: int = 0) -> PowerSensor:
    """Pick the best available sensor: INA3221 sysfs, then jtop, then NVML, else :class:`NullSensor`.

    Args:
        sysfs_root: Directory standing for ``/sys``.
        gpu_index: NVML device index.
    """
    from .ina3221 import Ina3221Sensor

    try:
        return Ina3221Sensor(sysfs_root=sysfs_root)
    except SensorError:
        pass
    candidates: list[tuple[str, Callable[[], PowerSensor]]] = []
    if find_spec("jtop") is not None:
        from .jtop_sensor import JtopSensor

        candidates.append(("jtop", JtopSensor))
    if find_spec("pynvml") is not None:
        from .nvml import NvmlSensor

        candidates.append(("pynvml", lambda: NvmlSensor(index=gpu_index)))
    for _, build in candidates:
        try:
            return build()
        except SensorError:
            continue
    return NullSensor()
