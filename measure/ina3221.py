"""Jetson on-module INA3221 power monitors read directly from sysfs.

Two layouts exist, both found under ``<sysfs_root>/bus/i2c/devices/*`` or
``<sysfs_root>/bus/i2c/drivers/ina3221*/*`` as on a real board:

- hwmon (JetPack 5 and newer): ``hwmon/hwmonM/inN_label``, ``inN_input`` (bus voltage, mV) and
  ``currN_input`` (current, mA); power = voltage x current.
- iio (JetPack 4): ``iio:deviceM/rail_name_N`` and ``in_powerN_input`` (power, mW).

Rails are chosen by label, never by index, from the per-board table in :mod:`measure.rails`: the
module total is one input rail (``VDD_IN`` on TX2, Xavier NX, Orin NX and Orin Nano; ``POM_5V_IN`` on
Nano) or the sum of the rails (AGX Xavier, AGX Orin), and the GPU, CPU and SoC rails are read too.
Every measurement records which rails it summed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import SensorError
from .rails import TOTAL_RAIL_LABELS, RailLayout, match_layout
from .sampler import Reading
from .sensors import Clock, SampledSensor

__all__ = ["TOTAL_RAIL_LABELS", "Ina3221Reader", "Ina3221Sensor", "Rail", "discover_rails"]

_HWMON_GLOBS = ("bus/i2c/devices/*/hwmon/hwmon*", "bus/i2c/drivers/ina3221*/*/hwmon/hwmon*")
_IIO_GLOBS = ("bus/i2c/devices/*/iio:device*", "bus/i2c/drivers/ina3221*/*/iio:device*")


@dataclass(frozen=True)
class Rail:
    """One INA3221 channel.

    Attributes:
        label: Rail name as the board labels it (``VDD_IN``, ``VDD_SYS_GPU`` ...).
        layout: ``hwmon`` or ``iio``.
        power_file: iio: file with the power in mW.
        voltage_file: hwmon: file with the bus voltage in mV.
        current_file: hwmon: file with the current in mA.
    """

    label: str
    layout: str
    power_file: Path | None = None
    voltage_file: Path | None = None
    current_file: Path | None = None

    def read_power_w(self) -> float:
        """Read the rail's power now, in watts."""
        if self.layout == "iio":
            assert self.power_file is not None
            return _read_number(self.power_file) / 1e3
        assert self.voltage_file is not None and self.current_file is not None
        return _read_number(self.voltage_file) * _read_number(self.current_file) / 1e6


def _read_number(path: Path) -> float:
    return float(path.read_text().strip())


def _is_ina3221(directory: Path) -> bool:
    name_file = directory / "name"
    if not name_file.is_file():
        return True
    return "ina3221" in name_file.read_text().strip().lower()


def _hwmon_rails(directory: Path) -> list[Rail]:
    rails = []
    for label_file in sorted(directory.glob("in*_label")):
        match = re.fullmatch(r"in(\d+)_label", label_file.name)
        if match is None:
            continue
        n = match.group(1)
        voltage, current = directory / f"in{n}_input", directory / f"curr{n}_input"
        if voltage.is_file() and current.is_file():
            label = label_file.read_text().strip()
            rails.append(Rail(label, "hwmon", voltage_file=voltage, current_file=current))
    return rails


def _iio_rails(directory: Path) -> list[Rail]:
    rails = []
    for label_file in sorted(directory.glob("rail_name_*")):
        match = re.fullmatch(r"rail_name_(\d+)", label_file.name)
        if match is None:
            continue
        power = directory / f"in_power{match.group(1)}_input"
        if power.is_file():
            rails.append(Rail(label_file.read_text().strip(), "iio", power_file=power))
    return rails


def discover_rails(sysfs_root: Path) -> dict[str, Rail]:
    """Find every labelled INA3221 rail under ``sysfs_root`` (both layouts), keyed by label."""
    found: dict[str, Rail] = {}
    seen: set[Path] = set()
    for globs, reader in ((_HWMON_GLOBS, _hwmon_rails), (_IIO_GLOBS, _iio_rails)):
        for pattern in globs:
            for directory in sorted(sysfs_root.glob(pattern)):
                resolved = directory.resolve()
                if resolved in seen or not directory.is_dir() or not _is_ina3221(directory):
                    continue
                seen.add(resolved)
                for rail in reader(directory):
                    if rail.label and rail.label not in found:
                        found[rail.label] = rail
    return found


@dataclass(frozen=True)
class Ina3221Reader:
    """Picklable reader of the chosen rails for the sampling process (plain file reads).

    Attributes:
        rails: The rails to read, main rail first.
    """

    rails: tuple[Rail, ...]

    def open(self) -> None:
        """Nothing to open: the files are read each time."""

    def read(self) -> Reading:
        """Every rail's power now (label -> W); no energy counter."""
        return {rail.label: rail.read_power_w() for rail in self.rails}, None

    def close(self) -> None:
        """Nothing to release."""


class Ina3221Sensor(SampledSensor):
    """Module power from the INA3221 monitors in sysfs (read in the sampling process by default)."""

    name = "ina3221"

    def __init__(
        self,
        sysfs_root: Path = Path("/sys"),
        *,
        interval_s: float = 0.01,
        main_rail: str | None = None,
        clock: Clock | None = None,
        sampler: str = "auto",
    ) -> None:
        """Discover the rails and check they can be read.

        Args:
            sysfs_root: Directory standing for ``/sys``.
            interval_s: Time between samples in seconds (the monitors update about every 1-10 ms).
            main_rail: Label of the one rail whose energy is reported; default the module total of
                the board's layout in :data:`measure.rails.RAIL_LAYOUTS` (one rail or a sum).
            clock: Monotonic clock in seconds (injectable for tests; implies the thread sampler).
            sampler: ``process``, ``thread`` or ``auto`` (see :class:`~measure.sensors.SampledSensor`).

        Raises:
            SensorError: No INA3221 rail is found, no known layout fits the rails and no main rail is
                given, or the main rail is missing or unreadable.
        """
        super().__init__(interval_s=interval_s, clock=clock, sampler=sampler)
        sysfs_root = Path(sysfs_root)
        found = discover_rails(sysfs_root)
        if not found:
            raise SensorError(
                f"no INA3221 power monitor under {sysfs_root}/bus/i2c; "
                "on a Jetson check the path, else use --sensor jtop, nvml or none"
            )
        labels = ", ".join(sorted(found))
        if main_rail is not None:
            if main_rail not in found:
                raise SensorError(f"INA3221 rail {main_rail} not found (rails: {labels}); pass main_rail=")
            layout: RailLayout | None = RailLayout(
                f"main_rail={main_rail}", total=(main_rail,), source="chosen by the caller"
            )
        else:
            layout = match_layout(found)
        if layout is None:
            known = " or ".join(TOTAL_RAIL_LABELS)
            raise SensorError(
                f"no known Jetson rail layout fits these INA3221 rails (rails: {labels}): no {known}, nor "
                "the rails an AGX Xavier or AGX Orin sums; pass main_rail="
            )
        self.layout = layout
        self.total_rails = layout.total
        self.main_rail = "+".join(layout.total)
        self._rails = {label: found[label] for label in layout.rails_to_read(found)}
        try:
            self.read_power_w()
        except (OSError, ValueError) as exc:
            raise SensorError(f"cannot read INA3221 rail files ({exc}); run as a user who can") from None

    def describe(self) -> dict[str, str]:
        """Facts for the run header, with the board layout the rails matched."""
        return {**super().describe(), "sensor_rail_layout": self.layout.name}

    def rails(self) -> list[str]:
        """Labels of the rails read, the module total's first."""
        return list(self._rails)

    def read_power_w(self) -> dict[str, float]:
        """Read every chosen rail now (label -> W)."""
        return {label: rail.read_power_w() for label, rail in self._rails.items()}

    def reader(self) -> Ina3221Reader:
        """The rails as a picklable reader for the sampling process."""
        return Ina3221Reader(tuple(self._rails.values()))
