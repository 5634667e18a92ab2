"""Power from the jetson-stats (``jtop``) client.

The jtop service must be running on the board (``sudo systemctl restart jtop.service``). We read the
instantaneous ``power`` field of every rail (``power["tot"]`` for the module total) and integrate our
own timestamped samples; jtop's ``avg`` field (a running ``(new + old) / 2``) is never used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import SensorError
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


def _read_rails(power: dict[str, Any], main_rail: str, extra: tuple[str, ...]) -> dict[str, float]:
    reading = {main_rail: float(power["tot"]["power"]) / 1e3}
    for label in extra:
        reading[label] = float(power["rail"][label]["power"]) / 1e3
    return reading


@dataclass
class JtopReader:
    """Picklable reader for the sampling process: it starts its own jtop client there.

    Attributes:
        interval_s: jtop update interval requested, in seconds.
        main_rail: Label of the module total.
        extra: Labels of the CPU and GPU rails read too.
    """

    interval_s: float
    main_rail: str
    extra: tuple[str, ...]
    _client: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval_s,
            "main_rail": self.main_rail,
            "extra": self.extra,
            "_client": None,
        }

    def open(self) -> None:
        """Start a jtop client in this process."""
        self._client = _start_client(self.interval_s)

    def read(self) -> Reading:
        """Every rail's instantaneous power (label -> W) from the client's latest update; no counter."""
        return _read_rails(self._client.power, self.main_rail, self.extra), None

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
        self.main_rail = str(power["tot"].get("name") or "total")
        rails = power.get("rail", {})
        self._extra = [
            label
            for label in rails
            if label != self.main_rail and ("GPU" in label.upper() or "CPU" in label.upper())
        ]

    def rails(self) -> list[str]:
        """Labels of the rails read, module total first."""
        return [self.main_rail, *self._extra]

    def read_power_w(self) -> dict[str, float]:
        """Read the instantaneous power of every rail (label -> W) from the client's latest update."""
        return _read_rails(self._client.power, self.main_rail, tuple(self._extra))

    def reader(self) -> JtopReader | None:
        """A reader that starts its own client in the sampling process (None for a client passed in)."""
        if not self._owns_client:
            return None
        return JtopReader(self.interval_s, self.main_rail, tuple(self._extra))

    def close(self) -> None:
        """Stop sampling and close the client if this sensor started it."""
        super().close()
        if self._owns_client and getattr(self, "_client", None) is not None:
            self._client.close()
            self._client = None
