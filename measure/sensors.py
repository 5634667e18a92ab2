"""The power-sensor interface, sampled sensors, and sensor selection.

Every sensor measures windows: ``begin_window()`` ... work ... ``end_window(span)`` returns a
:class:`Measurement`. Sensors that read power (INA3221 sysfs, jtop, NVML) sample it with a sampler from
:mod:`measure.sampler`, by default in a child process so that a busy main thread cannot starve it; every
reading is timestamped. Energy over the ``span`` (default the whole window) comes from the sensor's energy
counter where it has one (between the first and last counter tick in the span, see
:func:`measure.window.counter_span`), else from the trapezoid integral of the sampled power.
:class:`NullSensor` measures time only.

Concrete sensors live in :mod:`measure.ina3221`, :mod:`measure.jtop_sensor` and :mod:`measure.nvml`;
:func:`detect_sensor` and :func:`make_sensor` choose one.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar

from .errors import SensorError
from .sampler import ProcessSampler, Reader, Reading, Samples, ThreadSampler
from .window import counter_span, integrate_span, update_period_s

__all__ = [
    "SAMPLERS",
    "SENSOR_NAMES",
    "Measurement",
    "NullSensor",
    "PowerSensor",
    "Probe",
    "SampledSensor",
    "detect_sensor",
    "make_sensor",
]

SENSOR_NAMES = ("auto", "none", "ina3221", "jtop", "nvml")
SAMPLERS = ("auto", "process", "thread")

Clock = Callable[[], float]


@dataclass(frozen=True)
class Measurement:
    """What one window measured.

    Attributes:
        energy_j: Energy of the sensor's main rail (module total on a Jetson, the GPU for NVML) over the
            span in joules; ``None`` for sensors that measure time only.
        duration_s: Length of the span the energy covers, in seconds (from the sensor's own clock; with a
            counter, the time between the first and last tick in the span).
        mean_power_w: ``energy_j / duration_s`` in watts; ``None`` without energy.
        samples: Power readings inside the span, edges included (0 for time-only sensors).
        rail_energy_j: Energy in joules of every rail the sensor read (label -> J), main rail included.
        sample_rate_hz: Readings per second the sampler achieved inside the span (nan without readings).
        ticks: Energy-counter ticks inside the span (0 without a counter).
        total_rails: The rails whose energies ``energy_j`` sums: the module input alone where a board
            has one (``VDD_IN``), every rail of an AGX module, the GPU for NVML (empty: time only).
    """

    energy_j: float | None
    duration_s: float
    mean_power_w: float | None
    samples: int
    rail_energy_j: dict[str, float] = field(default_factory=dict)
    sample_rate_hz: float = math.nan
    ticks: int = 0
    total_rails: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class Probe:
    """How often a sensor's value changes, measured by :meth:`SampledSensor.probe`.

    Attributes:
        update_period_s: Median time between changes (counter ticks, else power refreshes), in seconds;
            the sampling interval when the value changed fewer than three times (then ``changes`` < 3).
        source: ``energy counter`` or ``power``: which value was watched.
        changes: Changes seen during the probe.
        sample_rate_hz: Readings per second the sampler achieved.
    """

    update_period_s: float
    source: str
    changes: int
    sample_rate_hz: float


class PowerSensor(ABC):
    """A source of per-window energy (or time only), used as a context manager or closed explicitly.

    Attributes:
        name: Short name as ``--sensor`` spells it.
        measures_energy: False for time-only sensors.
        has_counter: True when energy comes from a hardware energy counter.
        interval_s: Sampling interval in seconds (0 for time-only sensors).
    """

    name: ClassVar[str] = "abstract"
    measures_energy: ClassVar[bool] = True
    has_counter: bool = False
    interval_s: float = 0.0

    @abstractmethod
    def begin_window(self) -> None:
        """Open a measurement window now."""

    @abstractmethod
    def end_window(self, span: tuple[float, float] | None = None) -> Measurement:
        """Close the window opened by :meth:`begin_window` and return what it measured.

        Args:
            span: ``(t0, t1)`` in :meth:`now` seconds: take the energy over this part of the window only
                (default the whole window).
        """

    def now(self) -> float:
        """The sensor's clock in seconds (the time base of ``span``)."""
        return time.perf_counter()

    def probe(self, duration_s: float) -> Probe | None:
        """Measure how often the sensor's value changes (None for time-only sensors)."""
        return None

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

    def now(self) -> float:
        """The sensor's clock in seconds."""
        return self._clock()

    def begin_window(self) -> None:
        """Open a window now."""
        self._start_s = self._clock()

    def end_window(self, span: tuple[float, float] | None = None) -> Measurement:
        """Close the window and return its duration (``span`` is ignored: there is no energy)."""
        if self._start_s is None:
            raise SensorError("end_window() without begin_window(); open a window first")
        duration_s = self._clock() - self._start_s
        self._start_s = None
        return Measurement(energy_j=None, duration_s=duration_s, mean_power_w=None, samples=0)


class SampledSensor(PowerSensor):
    """Base of sensors that read power (and maybe an energy counter) with a sampler.

    Subclasses implement :meth:`read_power_w` and set :attr:`main_rail` (and :attr:`total_rails` where
    the main figure is a sum of rails); sensors with an energy counter set :attr:`has_counter` and
    implement :meth:`read_counter_j`; sensors that can be read from another process return a picklable
    :class:`~measure.sampler.Reader` from :meth:`reader`.
    """

    main_rail: str = ""
    total_rails: tuple[str, ...] = ()
    """Rails whose sum is the main figure (empty: :attr:`main_rail` alone)."""

    def __init__(self, *, interval_s: float, clock: Clock | None = None, sampler: str = "auto") -> None:
        """Set up sampling.

        Args:
            interval_s: Time between readings in seconds.
            clock: Monotonic clock in seconds that timestamps readings (injectable for tests; an injected
                clock cannot cross processes, so it implies the thread sampler).
            sampler: ``process`` (a child process, immune to a busy main thread), ``thread``, or ``auto``:
                process when the sensor has a reader and no clock is injected, else thread.
        """
        if not interval_s > 0:
            raise SensorError(f"sensor interval must be positive, got {interval_s} s")
        if sampler not in SAMPLERS:
            raise SensorError(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
        self.interval_s = interval_s
        self._clock = clock or time.perf_counter
        self._own_clock = clock is None
        self._sampler_choice = sampler
        self._sampler: ProcessSampler | ThreadSampler | None = None

    @abstractmethod
    def read_power_w(self) -> dict[str, float]:
        """Read the instantaneous power of every rail now (label -> W); must include the main rail."""

    def read_counter_j(self) -> float | None:
        """Read the energy counter in joules (None for sensors without one)."""
        return None

    def reader(self) -> Reader | None:
        """A picklable reader for the process sampler, or None when the sensor must be read here."""
        return None

    def rails(self) -> list[str]:
        """Labels of the rails this sensor reads, main rail first."""
        return [self.main_rail]

    def summed_rails(self) -> tuple[str, ...]:
        """The rails whose sum is the main figure (:attr:`total_rails`, else the main rail alone)."""
        return self.total_rails or (self.main_rail,)

    def _total_w(self, powers_w: dict[str, float]) -> float:
        return math.fsum(powers_w.get(rail, math.nan) for rail in self.summed_rails())

    @property
    def sampler_kind(self) -> str:
        """``process`` or ``thread``: where readings are taken."""
        if self._sampler_choice != "auto":
            return self._sampler_choice
        return "process" if self._own_clock and self.reader() is not None else "thread"

    def describe(self) -> dict[str, str]:
        """Facts about the sensor for the run header."""
        info = super().describe()
        info["sensor_rails"] = ",".join(self.rails())
        info["sensor_main_rail"] = self.main_rail
        info["sensor_total_rails"] = ",".join(self.summed_rails())
        info["sensor_sampler"] = self.sampler_kind
        info["sensor_has_energy_counter"] = str(self.has_counter).lower()
        return info

    def now(self) -> float:
        """The clock that timestamps readings, in seconds."""
        return self._clock()

    def _read(self) -> Reading:
        return self.read_power_w(), self.read_counter_j() if self.has_counter else None

    def _backend(self) -> ProcessSampler | ThreadSampler:
        if self._sampler is None:
            reader = self.reader() if self.sampler_kind == "process" else None
            if self.sampler_kind == "process":
                if reader is None:
                    raise SensorError(
                        f"{self.name} cannot be read from another process; use sampler='thread'"
                    )
                self._sampler = ProcessSampler(reader, interval_s=self.interval_s, name=self.name)
            else:
                self._sampler = ThreadSampler(
                    self._read, interval_s=self.interval_s, clock=self._clock, name=self.name
                )
        return self._sampler

    def begin_window(self) -> None:
        """Take the first reading and start sampling."""
        self._backend().start()

    def end_window(self, span: tuple[float, float] | None = None) -> Measurement:
        """Stop sampling, take the last reading and return the energy over ``span``."""
        return self.measure(self._backend().stop(), span)

    def measure(self, samples: Samples, span: tuple[float, float] | None = None) -> Measurement:
        """Energy of the main rail (and every rail) over ``span`` from one window's readings."""
        times_s = samples.times_s
        t0_s, t1_s = span if span is not None else (times_s[0], times_s[-1])
        t0_s, t1_s = max(t0_s, times_s[0]), min(t1_s, times_s[-1])
        inside = [t for t in times_s if t0_s <= t <= t1_s]
        spread_s = inside[-1] - inside[0] if inside else 0.0
        rate_hz = (len(inside) - 1) / spread_s if spread_s > 0 else math.nan
        if self.has_counter:
            counters = [math.nan if c is None else c for c in samples.counters_j]
            energy_j, duration_s, ticks = counter_span(times_s, counters, t0_s, t1_s)
            rail_energy_j = {self.main_rail: energy_j}
        else:
            ticks, duration_s = 0, max(t1_s - t0_s, 0.0)
            rail_energy_j = {
                rail: integrate_span(times_s, [p.get(rail, math.nan) for p in samples.powers_w], t0_s, t1_s)
                for rail in samples.powers_w[0]
            }
            total_j = math.fsum(rail_energy_j.get(rail, math.nan) for rail in self.summed_rails())
            energy_j = total_j if duration_s > 0 else math.nan
        mean_power_w = energy_j / duration_s if duration_s > 0 else math.nan
        return Measurement(
            energy_j=energy_j,
            duration_s=duration_s,
            mean_power_w=mean_power_w,
            samples=len(inside),
            rail_energy_j=rail_energy_j,
            sample_rate_hz=rate_hz,
            ticks=ticks,
            total_rails=(self.main_rail,) if self.has_counter else self.summed_rails(),
        )

    def probe(self, duration_s: float) -> Probe:
        """Sample for ``duration_s`` and measure how often the counter ticks (or the power refreshes)."""
        self.begin_window()
        time.sleep(duration_s)
        samples = self._backend().stop()
        times_s = samples.times_s
        if self.has_counter:
            values = [math.nan if c is None else c for c in samples.counters_j]
            source = "energy counter"
        else:
            values = [self._total_w(p) for p in samples.powers_w]
            source = "power"
        changes = sum(values[i] != values[i - 1] for i in range(1, len(values)))
        period_s = update_period_s(times_s, values)
        span_s = times_s[-1] - times_s[0]
        rate_hz = (len(times_s) - 1) / span_s if span_s > 0 else math.nan
        return Probe(
            update_period_s=self.interval_s if period_s is None else period_s,
            source=source,
            changes=changes,
            sample_rate_hz=rate_hz,
        )

    def close(self) -> None:
        """Stop sampling (and the sampling process)."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None


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
