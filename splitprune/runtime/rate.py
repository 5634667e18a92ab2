"""The device's view of its uplink: a smoothed rate estimate and a cut choice with hysteresis.

Every offloaded request is a measurement: ``8 * sent_bytes / transfer_s`` with ``transfer_s`` the
round trip less the time the server reports it spent (queue, batch and tail) and less the base round
trip (the smallest round trip of an empty probe). Samples are smoothed by an exponential moving
average of ``log(rate)`` (rates span decades; a log average lets one slow transfer move the estimate
by a factor, not by its absolute size). :class:`CutChooser` keeps the current cut while the estimate
stays inside that cut's policy range widened by ``hysteresis`` on both sides, so an estimate near a
boundary does not flap between two cuts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .cuts import Cut, SplitModel

__all__ = ["CutChooser", "RateEstimator"]


@dataclass
class RateEstimator:
    """Smoothed uplink rate from transfer timings.

    Attributes:
        estimate_bps: The current estimate, bit/s.
        smoothing: Weight of a new sample in the log-rate average, in (0, 1].
        low_bps: Samples are clipped to ``[low_bps, high_bps]``.
        high_bps: See ``low_bps``.
        base_rtt_s: Smallest round trip of an empty probe seen so far, s.
        samples: Number of samples taken.
    """

    estimate_bps: float
    smoothing: float = 0.5
    low_bps: float = 1e3
    high_bps: float = 1e11
    base_rtt_s: float = math.inf
    samples: int = 0

    def observe_rtt(self, rtt_s: float) -> None:
        """An empty round trip: the part of every round trip that is not transfer."""
        self.base_rtt_s = min(self.base_rtt_s, max(rtt_s, 0.0))

    def transfer_s(self, round_trip_s: float, server_s: float) -> float:
        """The part of a round trip spent moving bytes, s."""
        base = 0.0 if math.isinf(self.base_rtt_s) else self.base_rtt_s
        return max(round_trip_s - server_s - base, 0.0)

    def observe(self, sent_bytes: int, round_trip_s: float, server_s: float) -> float:
        """Add the sample of one transfer; return its rate, bit/s."""
        transfer = self.transfer_s(round_trip_s, server_s)
        rate = self.high_bps if transfer <= 0 else 8.0 * sent_bytes / transfer
        rate = min(max(rate, self.low_bps), self.high_bps)
        if self.samples == 0:
            self.estimate_bps = rate
        else:
            log_rate = (1 - self.smoothing) * math.log(self.estimate_bps) + self.smoothing * math.log(rate)
            self.estimate_bps = math.exp(log_rate)
        self.samples += 1
        return rate


@dataclass
class CutChooser:
    """The policy's cut for the estimate, kept while the estimate stays near the current cut's ranges.

    Attributes:
        model: The prepared model (its policy and cuts).
        hysteresis: Relative widening of the current cut's ranges (0.15: 15 % on each side).
        current: The cut in use.
        switches: How many times the cut changed.
    """

    model: SplitModel
    hysteresis: float = 0.15
    current: Cut | None = None
    switches: int = 0

    def choose(self, rate_bps: float) -> Cut:
        """The cut to start the next request with."""
        if self.current is not None and any(
            lo / (1 + self.hysteresis) <= rate_bps <= hi * (1 + self.hysteresis)
            for lo, hi in self.current.ranges_bps
        ):
            return self.current
        chosen = self.model.policy_cut(rate_bps)
        if self.current is not None and chosen.cut_id != self.current.cut_id:
            self.switches += 1
        self.current = chosen
        return chosen
