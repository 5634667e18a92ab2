from __future__ import annotations

import time
from pathlib import Path

import pytest
from measure_fakes import (
    BOARD_TREES,
    ScriptedClock,
    gpu_power_w,
    make_board_tree,
    make_hwmon_tree,
    make_iio_tree,
    rail_share,
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
    ("layout", "total", "gpu", "other"),
    [
        ("hwmon", "VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"),
        ("iio", "VDD_IN", "VDD_SYS_GPU", "VDD_4V0_WIFI"),
        ("iio", "POM_5V_IN", "POM_5V_GPU", "POM_5V_SYS"),
    ],
)
def test_integrated_energy_matches_analytic_integral(
    sysfs: Path, layout: str, total: str, gpu: str, other: str
):
    make = make_hwmon_tree if layout == "hwmon" else make_iio_tree
    writers = make(sysfs, {gpu: gpu_power_w, total: total_power_w, other: lambda t: 1.0})
    clock = ScriptedClock(writers)
    sensor = Ina3221Sensor(sysfs_root=sysfs, interval_s=0.002, clock=clock)
    parts = [other] if other == "VDD_SOC" else []  # the layout's SoC rail is read; a radio rail is not
    assert sensor.rails() == [total, gpu, *parts]  # chosen by label, module total first

    m, t0, t1 = _measure(sensor, clock)

    assert m.samples >= 20
    assert m.duration_s == pytest.approx(t1 - t0)
    assert m.energy_j == pytest.approx(total_energy_j(t0, t1), rel=0.01)
    gpu_j = 2.0 * (t1 - t0) + 5.0 * (t1**2 - t0**2)
    assert m.rail_energy_j[gpu] == pytest.approx(gpu_j, rel=0.01)
    assert m.mean_power_w == pytest.approx(m.energy_j / m.duration_s)
    assert {"energy_j", "duration_s", "mean_power_w", "samples", "rail_energy_j"} <= set(m.to_dict())
    assert m.ticks == 0  # no energy counter on an INA3221
    assert m.total_rails == (total,)


# what each board's module total is, by the labels of its rails (measure/rails.py, NVIDIA's guide)
BOARD_TOTALS = {
    "agx-orin": ("Jetson AGX Orin", ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO")),
    "agx-xavier": ("Jetson AGX Xavier", ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V")),
    "agx-xavier-jp4": ("Jetson AGX Xavier", ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V")),
    "orin-nx": ("Jetson Orin NX / Orin Nano / Xavier NX", ("VDD_IN",)),
    "xavier-nx": ("Jetson Orin NX / Orin Nano / Xavier NX", ("VDD_IN",)),
    "tx2": ("Jetson TX2", ("VDD_IN",)),
    "nano": ("Jetson Nano", ("POM_5V_IN",)),
}


@pytest.mark.parametrize("board", sorted(BOARD_TREES))
def test_default_sensor_measures_module_power_on_every_board_layout(sysfs: Path, board: str):
    """``Ina3221Sensor()`` with default options on trees laid out like each Jetson (issue 24)."""
    clock = ScriptedClock(make_board_tree(sysfs, board))
    sensor = Ina3221Sensor(sysfs_root=sysfs, interval_s=0.002, clock=clock)
    name, total = BOARD_TOTALS[board]
    assert sensor.layout.name == name and sensor.layout.total == total
    assert sensor.rails()[: len(total)] == list(total)
    assert "NC" not in sensor.rails() and "VDD_MUX" not in sensor.rails()  # never a carrier or NC channel
    assert sensor.describe()["sensor_total_rails"] == ",".join(total)
    assert sensor.describe()["sensor_rail_layout"] == name

    m, t0, t1 = _measure(sensor, clock)

    expected_j = sum(rail_share(rail) for rail in total) * total_energy_j(t0, t1)
    assert m.energy_j == pytest.approx(expected_j, rel=0.01)
    assert m.energy_j == pytest.approx(sum(m.rail_energy_j[rail] for rail in total), rel=1e-12)
    assert m.total_rails == total
    gpu = sensor.layout.gpu[0]
    assert m.rail_energy_j[gpu] == pytest.approx(rail_share(gpu) * total_energy_j(t0, t1), rel=0.01)
    sensor.close()


def test_rail_layouts_match_by_label_never_by_position():
    from measure.rails import RAIL_LAYOUTS, match_layout

    for layout in RAIL_LAYOUTS:
        assert match_layout(reversed(layout.labels)) == layout  # any order, any channel number
        assert layout.source  # every entry cites where its labels come from
    assert match_layout({"VDD_IN"}).name == "unknown board with VDD_IN"  # a bare input rail: no guess
    partial = {"VDD_GPU_SOC", "VDD_CPU_CV"}  # an AGX Orin missing two of its rails is not summed short
    assert match_layout(partial) is None


def test_a_board_missing_a_rail_of_its_sum_is_refused_not_undercounted(sysfs: Path):
    make_hwmon_tree(
        sysfs, {"VDD_GPU_SOC": gpu_power_w, "VDD_CPU_CV": gpu_power_w, "VIN_SYS_5V0": gpu_power_w}
    )
    with pytest.raises(SensorError, match="no known Jetson rail layout.*pass main_rail="):
        Ina3221Sensor(sysfs_root=sysfs)


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
