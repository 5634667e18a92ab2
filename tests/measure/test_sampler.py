"""The sampling process keeps its rate under a GIL-heavy main thread; errors and probes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from measure_fakes import CounterReader, make_hwmon_tree, make_iio_tree

from measure import Ina3221Sensor, SensorError
from measure.sampler import ProcessSampler
from measure.sensors import SampledSensor


def _spin(seconds: float) -> int:
    """A tight pure-Python loop: holds the GIL as a main thread launching kernels does."""
    deadline_s, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline_s:
        n += 1
    return n


def test_process_sampler_keeps_80_percent_of_its_rate_under_a_gil_heavy_loop(sysfs: Path):
    make_hwmon_tree(sysfs, {"VDD_IN": lambda t: 7.0})
    interval_s = 0.01  # 100 samples a second requested
    with Ina3221Sensor(sysfs_root=sysfs, interval_s=interval_s) as sensor:
        assert sensor.sampler_kind == "process"
        sensor.begin_window()  # starts the process (not timed: it imports measure once)
        sensor.end_window()
        sensor.begin_window()
        start_s = sensor.now()
        assert _spin(1.0) > 0
        m = sensor.end_window(span=(start_s, sensor.now()))
    assert m.sample_rate_hz >= 0.8 / interval_s
    assert m.samples >= 80
    assert m.mean_power_w == pytest.approx(7.0, rel=1e-3)
    assert m.duration_s == pytest.approx(1.0, abs=0.05)


def test_reading_errors_in_the_process_are_one_line_sensor_errors(sysfs: Path):
    make_iio_tree(sysfs, {"VDD_IN": lambda t: 5.0})
    with Ina3221Sensor(sysfs_root=sysfs, interval_s=0.002) as sensor:
        sensor.begin_window()
        (sysfs / "bus/i2c/devices/0-0041/iio:device1/in_power0_input").write_text("garbage\n")
        time.sleep(0.05)
        with pytest.raises(SensorError, match="reading power failed in the sampling process") as info:
            sensor.end_window()
        assert "\n" not in str(info.value)


class _Broken:
    def open(self) -> None:
        raise RuntimeError("no such device")

    def read(self):  # pragma: no cover - never reached
        return {}, None

    def close(self) -> None:
        pass


def test_a_sensor_that_cannot_open_in_the_process_is_reported():
    sampler = ProcessSampler(_Broken(), interval_s=0.01, name="broken")
    with pytest.raises(SensorError, match="broken: .*no such device"):
        sampler.start()
    sampler.close()


class _CounterSensor(SampledSensor):
    name = "fake-counter"

    def __init__(self, tick_s: float) -> None:
        super().__init__(interval_s=0.001)
        self.main_rail = "VDD_IN"
        self.has_counter = True
        self.tick_s = tick_s

    def read_power_w(self) -> dict[str, float]:  # pragma: no cover - read in the process
        return {"VDD_IN": 80.0}

    def reader(self) -> CounterReader:
        return CounterReader(80.0, self.tick_s)


def test_probe_measures_the_counter_tick_and_windows_take_energy_between_ticks():
    with _CounterSensor(tick_s=0.02) as sensor:
        probe = sensor.probe(0.4)
        assert probe.source == "energy counter"
        assert probe.update_period_s == pytest.approx(0.02, rel=0.15)
        sensor.begin_window()
        start_s = sensor.now()
        _spin(0.3)
        m = sensor.end_window(span=(start_s + 0.02, sensor.now()))
    assert m.ticks >= 10
    assert m.mean_power_w == pytest.approx(80.0, rel=0.01)
