"""Fake hardware for the measure tests: INA3221 sysfs trees driven by a scripted clock."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

PowerFn = Callable[[float], float]


def total_power_w(t_s: float) -> float:
    """Module power: 5 W plus a 3 W sine of period 50 ms."""
    return 5.0 + 3.0 * math.sin(2 * math.pi * t_s / 0.05)


def total_energy_j(t0_s: float, t1_s: float) -> float:
    """Analytic integral of :func:`total_power_w`."""
    k = 2 * math.pi / 0.05
    return 5.0 * (t1_s - t0_s) - 3.0 / k * (math.cos(k * t1_s) - math.cos(k * t0_s))


def gpu_power_w(t_s: float) -> float:
    """GPU rail: a ramp from 2 W."""
    return 2.0 + 10.0 * t_s


class ScriptedClock:
    """A clock that advances 1 ms per call and first writes every rail's reading for the new time."""

    def __init__(self, writers: list[Callable[[float], None]], step_s: float = 1e-3) -> None:
        self.t_s = 0.0
        self.step_s = step_s
        self.writers = writers
        self.calls: list[float] = []

    def __call__(self) -> float:
        self.t_s += self.step_s
        for write in self.writers:
            write(self.t_s)
        self.calls.append(self.t_s)
        return self.t_s


def _write(path: Path, value: float) -> None:
    path.write_text(f"{round(value)}\n")


def make_hwmon_tree(root: Path, rails: dict[str, PowerFn]) -> list[Callable[[float], None]]:
    """JetPack 5 layout under bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3 (5 V bus)."""
    hwmon = root / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("ina3221\n")
    writers = []
    for n, (label, power) in enumerate(rails.items(), start=1):
        (hwmon / f"in{n}_label").write_text(f"{label}\n")
        _write(hwmon / f"in{n}_input", 5000)
        current = hwmon / f"curr{n}_input"
        writers.append(lambda t, f=current, p=power: _write(f, p(t) / 5.0 * 1000))
    # a channel without a label (the "sum" channel on some boards) must be ignored
    _write(hwmon / "in7_input", 5000)
    for write in writers:
        write(0.0)
    return writers


def make_iio_tree(root: Path, rails: dict[str, PowerFn]) -> list[Callable[[float], None]]:
    """JetPack 4 layout under bus/i2c/devices/0-0041/iio:device1 (power in mW)."""
    iio = root / "bus/i2c/devices/0-0041/iio:device1"
    iio.mkdir(parents=True)
    (iio / "name").write_text("ina3221x\n")
    writers = []
    for n, (label, power) in enumerate(rails.items()):
        (iio / f"rail_name_{n}").write_text(f"{label}\n")
        target = iio / f"in_power{n}_input"
        writers.append(lambda t, f=target, p=power: _write(f, p(t) * 1000))
    for write in writers:
        write(0.0)
    return writers


class ConstantReader:
    """Picklable reader for the sampling process: ``power_w`` on rail VDD_IN (NaN when ``bad``)."""

    def __init__(self, power_w: float) -> None:
        self.power_w = power_w

    def open(self) -> None:
        pass

    def read(self) -> tuple[dict[str, float], None]:
        return {"VDD_IN": self.power_w}, None

    def close(self) -> None:
        pass


class CounterReader:
    """Picklable reader: ``power_w`` constant, an energy counter that ticks every ``tick_s``.

    The counter is the exact energy up to the last tick of ``time.perf_counter`` (one clock for every
    process), so a window's energy between ticks is ``power_w`` times the time between them.
    """

    def __init__(self, power_w: float, tick_s: float) -> None:
        self.power_w = power_w
        self.tick_s = tick_s

    def open(self) -> None:
        pass

    def read(self) -> tuple[dict[str, float], float]:
        now_s = time.perf_counter()
        return {"VDD_IN": self.power_w}, self.power_w * (now_s // self.tick_s) * self.tick_s

    def close(self) -> None:
        pass


BOARD_TREES: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    # board -> (sysfs layout, I2C device -> its three channel labels), as NVIDIA's Jetson Linux Developer
    # Guide ("Platform Power and Performance", power monitor tables) lists them for each module
    "agx-orin": ("hwmon", {"1-0040": ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"),
                           "1-0041": ("NC", "VDDQ_VDD2_1V8AO", "NC")}),
    "agx-xavier": ("hwmon", {"1-0040": ("GPU", "CPU", "SOC"), "1-0041": ("CV", "VDDRQ", "SYS5V")}),
    "agx-xavier-jp4": ("iio", {"1-0040": ("GPU", "CPU", "SOC"), "1-0041": ("CV", "VDDRQ", "SYS5V")}),
    "orin-nx": ("hwmon", {"1-0040": ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")}),
    "xavier-nx": ("iio", {"7-0040": ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")}),
    # the TX2 developer kit's carrier board adds its own INA3221 (VDD_MUX is the carrier's input)
    "tx2": ("iio", {"0-0040": ("VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI"),
                    "0-0041": ("VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR"),
                    "1-0042": ("VDD_MUX", "VDD_5V0_IO_SYS", "VDD_3V3_SYS")}),
    "nano": ("iio", {"6-0040": ("POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU")}),
}  # fmt: skip


def rail_share(label: str) -> float:
    """Each fake rail draws a different fixed share of :func:`total_power_w` (so sums are checkable)."""
    return 0.25 + (sum(map(ord, label)) % 17) / 20


def make_board_tree(root: Path, board: str) -> list[Callable[[float], None]]:
    """A sysfs tree laid out like ``board`` (:data:`BOARD_TREES`): every INA3221 and every channel."""
    layout, devices = BOARD_TREES[board]
    writers: list[Callable[[float], None]] = []
    for device, labels in devices.items():
        if layout == "hwmon":
            where = root / f"bus/i2c/drivers/ina3221/{device}/hwmon/hwmon{len(writers)}"
            where.mkdir(parents=True)
            (where / "name").write_text("ina3221\n")
        else:
            where = root / f"bus/i2c/devices/{device}/iio:device{len(writers)}"
            where.mkdir(parents=True)
            (where / "name").write_text("ina3221x\n")
        for n, label in enumerate(labels, start=1):
            share = rail_share(label)
            if layout == "hwmon":
                (where / f"in{n}_label").write_text(f"{label}\n")
                _write(where / f"in{n}_input", 5000)
                target = where / f"curr{n}_input"
                writers.append(lambda t, f=target, s=share: _write(f, s * total_power_w(t) / 5.0 * 1000))
            else:
                (where / f"rail_name_{n - 1}").write_text(f"{label}\n")
                target = where / f"in_power{n - 1}_input"
                writers.append(lambda t, f=target, s=share: _write(f, s * total_power_w(t) * 1000))
    for write in writers:
        write(0.0)
    return writers
