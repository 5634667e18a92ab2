"""A Jetson's own ``/etc/nvpmodel.conf``, read as power modes the pricing can use.

Every Jetson ships its power modes in ``/etc/nvpmodel.conf`` (L4T's ``nvpmodel`` tool reads it). The
format, as NVIDIA's files and MLPerf's submission templates (mlcommons/inference_results_v3.0,
``closed/*/code/common/nvpmodel_*.py``; NVIDIA's ``power/README.md`` there lists the fields) write it:

- ``< PARAM TYPE=FILE|CLOCK NAME=X >`` sections declare what a mode may set (sysfs paths: skipped);
- ``< POWER_MODEL ID=N NAME=S >`` starts a mode; each following line is ``PARAM ARG VALUE``:
  ``CPU_ONLINE CORE_k 0|1`` (cores online), ``CPU_<CLUSTER> MAX_FREQ f`` (kHz, cpufreq's unit:
  ``CPU_A57``, ``CPU_DENVER_0``, ``CPU_A78_0`` ...), ``GPU MAX_FREQ f`` (Hz, devfreq's unit),
  ``EMC MAX_FREQ f`` (Hz), ``TPC_POWER_GATING TPC_PG_MASK m`` (bit i set: TPC i power-gated);
  ``-1`` means no cap;
- ``< PM_CONFIG DEFAULT=N >`` names the default mode; ``#`` starts a comment.

A mode becomes a :class:`~splitprune.hardware.PowerMode` priced by the same clock and voltage
scaling as a mode of the profile's own table. A clock the mode does not cap is the profile's fitted
mode's. TPC gating is read relative to the file's mode of the same name or number as the profile's
fitted mode (masks also mark floor-swept TPCs, so only the difference is gated); without that mode
in the file the SM count is left as the device's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError
from .hardware import PowerMode

if TYPE_CHECKING:
    from .board import BoardProfile

__all__ = ["NvpMode", "NvpmodelConf", "load_nvpmodel", "parse_nvpmodel"]

_HEADER = re.compile(r"<\s*(\w+)\s*(.*?)\s*>")
_ATTR = re.compile(r"(\w+)\s*=\s*(\S+)")
SMS_PER_TPC = 2
"""SMs per TPC on every Jetson GPU with TPC power gating (Volta, Ampere)."""


@dataclass
class NvpMode:
    """One ``POWER_MODEL`` block.

    Attributes:
        mode_id: The ``ID``.
        name: The ``NAME``.
        settings: ``(PARAM, ARG) -> value`` as written.
    """

    mode_id: int
    name: str
    settings: dict[tuple[str, str], str] = field(default_factory=dict)

    def _number(self, param: str, arg: str = "MAX_FREQ") -> float | None:
        value = self.settings.get((param, arg))
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"nvpmodel mode {self.name}: {param} {arg} {value!r} is not a number") from None
        return None if number < 0 else number

    @property
    def gpu_clock_hz(self) -> float | None:
        """GPU clock cap, Hz (None: no cap)."""
        return self._number("GPU")

    @property
    def emc_clock_hz(self) -> float | None:
        """Memory clock cap, Hz (None: no cap)."""
        return self._number("EMC")

    @property
    def cpu_clock_hz(self) -> float | None:
        """Highest CPU cluster clock cap, Hz (cpufreq writes kHz; None: no cap)."""
        caps = [self._number(p) for p, a in self.settings if p.startswith("CPU_") and a == "MAX_FREQ"]
        known = [c for c in caps if c is not None]
        return max(known) * 1e3 if known else None

    @property
    def cpu_cores(self) -> int | None:
        """Cores online (None: the mode does not say)."""
        online = [v for (p, _), v in self.settings.items() if p == "CPU_ONLINE"]
        return sum(1 for v in online if v.strip() == "1") if online else None

    @property
    def tpc_mask(self) -> int | None:
        """The TPC power-gating mask (None: not set)."""
        value = self.settings.get(("TPC_POWER_GATING", "TPC_PG_MASK"))
        if value is None:
            return None
        try:
            return int(value, 0)
        except ValueError:
            raise ConfigError(f"nvpmodel mode {self.name}: TPC_PG_MASK {value!r} is not a number") from None


@dataclass
class NvpmodelConf:
    """A parsed ``nvpmodel.conf``.

    Attributes:
        modes: The ``POWER_MODEL`` blocks in file order.
        default_id: ``PM_CONFIG DEFAULT`` (None if absent).
        source: Where it was read from.
    """

    modes: list[NvpMode]
    default_id: int | None = None
    source: str = "nvpmodel.conf"

    def find(self, name: str) -> NvpMode | None:
        """The mode with ID or NAME ``name`` (case-insensitive), else None."""
        for mode in self.modes:
            if name.strip().lower() in (str(mode.mode_id), mode.name.lower()):
                return mode
        return None

    def power_mode(self, name: str, profile: BoardProfile) -> PowerMode:
        """Mode ``name`` (ID or NAME) as a power mode of ``profile`` (see the module docstring).

        Raises:
            ConfigError: No such mode, or the profile has no fitted mode to fill in missing caps.
        """
        mode = self.find(name)
        if mode is None:
            known = ", ".join(f"{m.mode_id} ({m.name})" for m in self.modes) or "none"
            raise ConfigError(f"{self.source} has no power mode {name!r}; use one of: {known}")
        fitted = profile.power_modes.get(profile.board.power_mode)
        if fitted is None or profile.device is None:
            raise ConfigError(
                f"board {profile.board.name!r} has no [device] and [power_modes] tables; "
                "--nvpmodel-conf needs a schema-3 profile"
            )
        sm_count = None
        reference = self.find(profile.board.power_mode)
        if reference is None and fitted.nvpmodel_id is not None:
            reference = self.find(str(fitted.nvpmodel_id))
        if reference is not None and mode.tpc_mask is not None and reference.tpc_mask is not None:
            gated = bin(mode.tpc_mask).count("1") - bin(reference.tpc_mask).count("1")
            sm_count = max(1, (fitted.sm_count or profile.device.sm_count) - SMS_PER_TPC * gated)
        return PowerMode(
            nvpmodel_id=mode.mode_id,
            gpu_clock_hz=mode.gpu_clock_hz or fitted.gpu_clock_hz,
            emc_clock_hz=mode.emc_clock_hz or fitted.emc_clock_hz,
            cpu_clock_hz=mode.cpu_clock_hz or fitted.cpu_clock_hz,
            cpu_cores=mode.cpu_cores or fitted.cpu_cores,
            sm_count=sm_count if sm_count is not None else fitted.sm_count,
        )


def parse_nvpmodel(text: str, *, source: str = "nvpmodel.conf") -> NvpmodelConf:
    """Parse the text of an ``nvpmodel.conf``.

    Raises:
        ConfigError: A malformed header or setting line (the message names the line), or no mode.
    """
    modes: list[NvpMode] = []
    default_id: int | None = None
    current: NvpMode | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        header = _HEADER.fullmatch(line)
        if header:
            kind, attrs = header.group(1).upper(), dict(_ATTR.findall(header.group(2)))
            current = None
            if kind == "POWER_MODEL":
                if "ID" not in attrs or not attrs["ID"].isdigit():
                    raise ConfigError(f"{source}:{number}: POWER_MODEL needs ID=<number>")
                current = NvpMode(int(attrs["ID"]), str(attrs.get("NAME") or attrs["ID"]))
                modes.append(current)
            elif kind == "PM_CONFIG" and attrs.get("DEFAULT", "").isdigit():
                default_id = int(attrs["DEFAULT"])
            continue
        if line.startswith("<"):
            hint = "write < POWER_MODEL ID=0 NAME=X >"
            raise ConfigError(f"{source}:{number}: malformed header {line!r}; {hint}")
        if current is None:
            continue  # a PARAM section's sysfs path
        parts = line.split()
        if len(parts) != 3:
            raise ConfigError(f"{source}:{number}: expected 'PARAM ARG VALUE', got {line!r}")
        current.settings[(parts[0].upper(), parts[1].upper())] = parts[2]
    if not modes:
        raise ConfigError(f"{source}: no '< POWER_MODEL ID=N NAME=X >' block; is this an nvpmodel.conf?")
    return NvpmodelConf(modes, default_id, source)


def load_nvpmodel(path: str | Path) -> NvpmodelConf:
    """Read and parse an ``nvpmodel.conf`` file.

    Raises:
        ConfigError: The file cannot be read or is malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read --nvpmodel-conf {path}: {exc.strerror}; check the path") from None
    return parse_nvpmodel(text, source=str(path))
