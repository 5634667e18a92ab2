"""Power from the jetson-stats (``jtop``) client.

The jtop service must be running on the board (``sudo systemctl restart jtop.service``). We read the
instantaneous ``power`` field of every rail and integrate our own timestamped samples; jtop's ``avg``
field (a running ``(new + old) / 2``) is never used.

The module total follows the same per-board table as the INA3221 sensor (:mod:`measure.rails`), by
label: where jtop names its ``tot`` (``VDD_IN``, ``POM_5V_IN``: it took that rail out of the list) we
read it; on an AGX board jtop's unnamed ``tot`` is the sum of every rail and power supply it found, so
we sum the layout's rails ourselves instead. Only a board no layout fits falls back to jtop's ``tot``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import SensorError
from .rails import RailLayout, match_layout
from .sampler import Reading
from .sensors import Clock, SampledSensor

__all__ = ["JtopReader", "JtopSensor"]


def _start_client(interval_s: float) -> Any:
    try:
        from jtop import jtop
    except ImportError:
        raise SensorError(
            "jetson-stats is not installed: pip install jetson-stats on the board and start its "
            "service, or use --sensor ina3221"
        ) from None
    client = jtop(interval=interval_s)
    try:
        client.start()
    except Exception as exc:  # jtop raises JtopException when its service is down
        raise SensorError(
            f"cannot connect to the jtop service ({exc}); start it with "
            "'sudo systemctl restart jtop.service' or use --sensor ina3221"
        ) from None
    return client


def _read_rails(
    power: dict[str, Any], main_rail: str, from_tot: bool, rails: tuple[str, ...]
) -> dict[str, float]:
    reading = {main_rail: float(power["tot"]["power"]) / 1e3} if from_tot else {}
    for label in rails:
        reading[label] = float(power["rail"][label]["power"]) / 1e3
    return reading


@dataclass
class JtopReader:
    """Picklable reader for the sampling process: it starts its own jtop client there.

    Attributes:
        interval_s: jtop update interval requested, in seconds.
        main_rail: Label of the module total.
        from_tot: Whether the total is jtop's ``tot`` (else the sum of ``rails``' total rails).
        rails: Labels of the rails read from jtop's ``rail`` list.
    """

    interval_s: float
    main_rail: str
    from_tot: bool
    rails: tuple[str, ...]
    _client: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval_s,
            "main_rail": self.main_rail,
            "from_tot": self.from_tot,
            "rails": self.rails,
            "_client": None,
        }

    def open(self) -> None:
        """Start a jtop client in this process."""
        self._client = _start_client(self.interval_s)

    def read(self) -> Reading:
        """Every rail's instantaneous power (label -> W) from the client's latest update; no counter."""
        return _read_rails(self._client.power, self.main_rail, self.from_tot, self.rails), None

    def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None


class JtopSensor(SampledSensor):
    """Module power through a jetson-stats client (read in the sampling process by default)."""

    name = "jtop"

    def __init__(
        self,
        *,
        client: Any | None = None,
        interval_s: float = 0.05,
        clock: Clock | None = None,
        sampler: str = "auto",
    ) -> None:
        """Connect to the jtop service (or use ``client``).

        Args:
            client: An already started object shaped like ``jtop.jtop`` (its ``power`` property);
                by default a new client is started with ``interval_s``.
            interval_s: Time between samples in seconds (also the jtop update interval requested).
            clock: Monotonic clock in seconds (injectable for tests; implies the thread sampler).
            sampler: ``process``, ``thread`` or ``auto``: by default a client passed in is read in a
                thread (it cannot leave this process), else the sampling process starts its own client.

        Raises:
            SensorError: jetson-stats is missing, its service is not running, or it reports no power.
        """
        super().__init__(interval_s=interval_s, clock=clock, sampler=sampler)
        self._owns_client = client is None
        self._client = _start_client(interval_s) if client is None else client
        power = self._client.power
        if not isinstance(power, dict) or "tot" not in power:
            self.close()
            raise SensorError("jtop reports no total power ('tot'); update jetson-stats to 4.2 or later")
        rails = dict(power.get("rail", {}))
        named = power["tot"].get("name")
        layout = match_layout({*rails, named} if named else rails)
        if named:  # jtop took the module-input rail out of its list and reports it as tot
            self._from_tot, self.main_rail = True, str(named)
            parts = layout.rails_to_read(rails) if layout else []
            self._parts = tuple(label for label in parts if label in rails and label != named)
        elif layout is not None:  # an AGX board: the sum of the layout's rails, never jtop's sum of all
            self._from_tot, self.main_rail = False, "+".join(layout.total)
            self.total_rails = layout.total
            self._parts = tuple(layout.rails_to_read(rails))
        else:
            self._from_tot, self.main_rail = True, "total"
            self._parts = tuple(label for label in rails if "GPU" in label.upper() or "CPU" in label.upper())
        self.layout = layout or RailLayout(
            "unknown board: jetson-stats' total", total=(self.main_rail,), source="jtop power['tot']"
        )

    def rails(self) -> list[str]:
        """Labels of the rails read, the module total's first."""
        return [self.main_rail, *self._parts] if self._from_tot else list(self._parts)

    def describe(self) -> dict[str, str]:
        """Facts for the run header, with the board layout the rails matched."""
        return {**super().describe(), "sensor_rail_layout": self.layout.name}

    def read_power_w(self) -> dict[str, float]:
        """Read the instantaneous power of every rail (label -> W) from the client's latest update."""
        return _read_rails(self._client.power, self.main_rail, self._from_tot, self._parts)

    def reader(self) -> JtopReader | None:
        """A reader that starts its own client in the sampling process (None for a client passed in)."""
        if not self._owns_client:
            return None
        return JtopReader(self.interval_s, self.main_rail, self._from_tot, self._parts)

    def close(self) -> None:
        """Stop sampling and close the client if this sensor started it."""
        super().close()
        if self._owns_client and getattr(self, "_client", None) is not None:
            self._client.close()
            self._client = None
