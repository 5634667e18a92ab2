from __future__ import annotations

import time
from pathlib import Path

import pytest
from measure_fakes import (
    ScriptedClock,
    gpu_power_w,
    make_hwmon_tree,
    make_iio_tree,
    total_energy_j,
    total_power_w,
)

from measure import Ina3221Sensor, SensorError, detect_sensor
from measure.ina3221 import discover_rails
from measure.sensors import NullSensor


def _wait_for_samples(clock: ScriptedClock, count: int, timeout_s: float = 20.0) -> None:
    """Wait until the sampling thread has taken ``count`` samples (a loaded machine is slow)."""
    deadline = time.monotonic() + timeout_s
    while len(clock.calls) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def _measure(sensor: Ina3221Sensor, clock: ScriptedClock, samples: int = 40):
    first = len(clock.calls)  # begin_window's own sample is the window's first
    sensor.begin_window()
    _wait_for_samples(clock, first + samples)
    measurement = sensor.end_window()
    return measurement, clock.calls[first], clock.calls[-1]


@pytest.mark.parametrize(
    ("layout", "total", "gpu"),
    [
        ("hwmon", "VDD_IN", "VDD_CPU_GPU_CV"),
        ("iio", "VDD_IN", "VDD_SYS_GPU"),
        ("iio", "POM_5V_IN", "POM_5V_GPU"),
    ],
)
def test_integrated_energy_matches_analytic_integral(sysfs: Path, layout: str, total: str, gpu: str):
    make = make_hwmon_tree if layout == "hwmon" else make_iio_tree
    writers = make(sysfs, {gpu: gpu_power_w, total: total_power_w, "VDD_SOC": lambda t: 1.0})
    clock = ScriptedClock(writers)
    sensor = Ina3221Sensor(sysfs_root=sysfs, interval_s=0.002, clock=clock)
    assert sensor.rails() == [total, gpu]  # chosen by label, module total first; SOC not read

    m, t0, t1 = _measure(sensor, clock)

    assert m.samples >= 20
    assert m.duration_s == pytest.approx(t1 - t0)
    assert m.energy_j == pytest.approx(total_energy_j(t0, t1), rel=0.01)
    gpu_j = 2.0 * (t1 - t0) + 5.0 * (t1**2 - t0**2)
    assert m.rail_energy_j[gpu] == pytest.approx(gpu_j, rel=0.01)
    assert m.mean_power_w == pytest.approx(m.energy_j / m.duration_s)
    assert {"energy_j", "duration_s", "mean_power_w", "samples", "rail_energy_j"} <= set(m.to_dict())
    assert m.ticks == 0  # no energy counter on an INA3221


def test_second_window_is_independent(sysfs: Path):
    clock = ScriptedClock(make_hwmon_tree(sysfs, {"VDD_IN": total_power_w}))
    sensor = Ina3221Sensor(sysfs_root=sysfs, interval_s=0.002, clock=clock)
    _measure(sensor, clock, 20)
    m, t0, t1 = _measure(sensor, clock, 20)
    assert m.energy_j == pytest.approx(total_energy_j(t0, t1), rel=0.01)


def test_both_discovery_paths_and_dedup(sysfs: Path):
    make_iio_tree(sysfs, {"VDD_IN": total_power_w})
    # the same device also reachable through the driver directory (a symlink on a real board)
    driver = sysfs / "bus/i2c/drivers/ina3221x"
    driver.mkdir(parents=True)
    (driver / "0-0041").symlink_to(sysfs / "bus/i2c/devices/0-0041")
    assert list(discover_rails(sysfs)) == ["VDD_IN"]


def test_missing_tree_and_missing_total_rail_are_one_line_errors(sysfs: Path):
    with pytest.raises(SensorError, match="no INA3221") as no_tree:
        Ina3221Sensor(sysfs_root=sysfs)
    assert "\n" not in str(no_tree.value)
    make_hwmon_tree(sysfs, {"VDD_GPU": gpu_power_w})
    with pytest.raises(SensorError, match="rails: VDD_GPU"):
        Ina3221Sensor(sysfs_root=sysfs)
    assert Ina3221Sensor(sysfs_root=sysfs, main_rail="VDD_GPU").main_rail == "VDD_GPU"


def test_other_hwmon_devices_are_ignored(sysfs: Path):
    other = sysfs / "bus/i2c/devices/2-0048/hwmon/hwmon0"
    other.mkdir(parents=True)
    (other / "name").write_text("tmp451\n")
    (other / "in1_label").write_text("VDD_IN\n")
    (other / "in1_input").write_text("1\n")
    (other / "curr1_input").write_text("1\n")
    assert discover_rails(sysfs) == {}


def test_window_misuse_raises(sysfs: Path):
    make_hwmon_tree(sysfs, {"VDD_IN": total_power_w})
    sensor = Ina3221Sensor(sysfs_root=sysfs)
    with pytest.raises(SensorError, match="without begin_window"):
        sensor.end_window()
    sensor.begin_window()
    with pytest.raises(SensorError, match="already open|while a window is open"):
        sensor.begin_window()
    sensor.close()


def test_unreadable_rail_during_window_is_reported(sysfs: Path):
    make_iio_tree(sysfs, {"VDD_IN": total_power_w})
    sensor = Ina3221Sensor(sysfs_root=sysfs, interval_s=0.001)
    sensor.begin_window()
    (sysfs / "bus/i2c/devices/0-0041/iio:device1/in_power0_input").write_text("garbage\n")
    time.sleep(0.02)
    with pytest.raises(SensorError, match="reading power failed"):
        sensor.end_window()


def test_detect_prefers_ina3221_and_falls_back_to_null(sysfs: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("measure.sensors.find_spec", lambda name: None)  # no jtop, no pynvml
    assert isinstance(detect_sensor(sysfs_root=sysfs), NullSensor)
    make_hwmon_tree(sysfs, {"VDD_IN": total_power_w})
    assert isinstance(detect_sensor(sysfs_root=sysfs), Ina3221Sensor)


def test_null_sensor_measures_time_only():
    ticks = iter([1.0, 3.5])
    sensor = NullSensor(clock=lambda: next(ticks))
    sensor.begin_window()
    m = sensor.end_window()
    assert (m.energy_j, m.duration_s, m.samples, m.mean_power_w) == (None, 2.5, 0, None)
