"""Power from the jetson-stats (``jtop``) client.

The jtop service must be running on the board (``sudo systemctl restart jtop.service``). We read the
instantaneous ``power`` field of every rail (``power["tot"]`` for the module total) and integrate our
own timestamped samples; jtop's ``avg`` field (a running ``(new + old) / 2``) is never used.
"""

from __future__ import annotations

import time
from typing import Any

from .errors import SensorError
from .sensors import Clock, SampledSensor

__all__ = ["JtopSensor"]


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


class JtopSensor(SampledSensor):
    """Module power through a jetson-stats client, sampled in a background thread."""

    name = "jtop"

    def __init__(
        self,
        *,
        client: Any | None = None,
        interval_s: float = 0.05,
        clock: Clock = time.perf_counter,
    ) -> None:
        """Connect to the jtop service (or use ``client``).

        Args:
            client: An already started object shaped like ``jtop.jtop`` (its ``power`` property);
                by default a new client is started with ``interval_s``.
            interval_s: Time between samples in seconds (also the jtop update interval requested).
            clock: Monotonic clock in seconds (injectable for tests).

        Raises:
            SensorError: jetson-stats is missing, its service is not running, or it reports no power.
        """
        super().__init__(interval_s=interval_s, clock=clock)
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
        power = self._client.power
        reading = {self.main_rail: float(power["tot"]["power"]) / 1e3}
        for label in self._extra:
            reading[label] = float(power["rail"][label]["power"]) / 1e3
        return reading

    def close(self) -> None:
        """Stop sampling and close the client if this sensor started it."""
        super().close()
        if self._owns_client and getattr(self, "_client", None) is not None:
            self._client.close()
            self._client = None
