"""The device's view of its uplink: a burst-proof rate estimate and a cut choice on sustained evidence.

Every offloaded request (and every probe with a payload) is a transfer of ``sent_bytes`` taking
``transfer_s``: the round trip less the time the server reports it spent (queue, batch and tail) and
less the base round trip (the smallest round trip of an empty probe).

Links are often policed by token buckets (``tc ... tbf``, cellular uplinks): after an idle spell the
bucket holds up to ``burst`` bytes that pass at once; only the bytes beyond them move at the
sustained rate. So ``8 * sent_bytes / transfer_s`` of one transfer says little: a tensor that fits in
the bucket reads as a link of any speed, a larger one reads too fast. :class:`RateEstimator` models
the bucket:

- **the burst** is measured on connecting: a train of small probes sent back to back
  (:meth:`RateEstimator.observe_train`; the server says when each arrived). The first ones pass at
  once, the rest one per ``8 * size / rate``: the slope is the rate, the bytes ahead of it the burst.
  A transfer quicker than ``resolution_s`` fitted in the bucket: it carries no rate, and the burst is
  at least its size;
- **each transfer**: the bucket held ``min(burst, rate * idle / 8)`` when it started (``idle``: time
  since the previous transfer ended, which emptied the bucket when it was larger than the burst), so
  the rate is ``max(8 * sent / (transfer + idle), 8 * (sent - burst) / transfer)`` (the first where
  the bucket did not fill in the idle spell, the second where it did). A transfer no larger than the
  burst is evidence only where a bound excludes the estimate: ``8 * sent / (transfer + idle)`` above
  it (the link is faster) or ``8 * sent / transfer`` below it (slower). The train's burst is believed
  only where its part past the burst lasted ``train_min_s``; else it stays unknown (0) and transfers
  count whole, which reads a small bucket's link a little fast, never slow;
- **the estimate** is a window weighted by transfer time, ``sum(bits) / sum(seconds)`` with each older
  sample's weight multiplied by ``1 - smoothing`` per new one, so one short fast transfer moves it
  little and a few long slow ones move it fast. Each step adds the faster of the last ``envelope``
  samples: a busy machine or a retransmission only ever adds time.

:class:`CutChooser` keeps the current cut while the estimate stays inside that cut's policy range
widened by ``hysteresis`` on both sides, and changes it only when the estimate has pointed outside for
``confirm`` requests in a row: one odd sample never switches the cut.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .cuts import Cut, SplitModel

__all__ = ["CutChooser", "RateEstimator"]


@dataclass
class RateEstimator:
    """Sustained uplink rate from transfer sizes and timings, and the link's burst.

    Attributes:
        estimate_bps: The current estimate, bit/s.
        smoothing: Weight of a new sample in the size-weighted window, in (0, 1] (1: the last sample).
        low_bps: The estimate stays within ``[low_bps, high_bps]``.
        high_bps: See ``low_bps``.
        base_rtt_s: Smallest round trip of an empty probe seen so far, s.
        samples: Number of transfers observed.
        resolution_s: A transfer quicker than this fitted in the burst: it carries no rate, s.
        burst_bytes: What the link passes at once after an idle spell (from :meth:`observe_train`, and
            at least the largest transfer that fitted), bytes; 0 while unknown.
        rate_samples: Transfers that moved the estimate.
        train_min_s: A train's burst is believed only where its part past the burst lasted this long
            (a fast link moves a short train in less time than a busy machine's scheduling delays), s.
        envelope: Each step adds the fastest of the last ``envelope`` rate samples (delays from a busy
            machine or a retransmission only ever add time, so the fastest is the best evidence).
    """

    estimate_bps: float
    smoothing: float = 0.5
    low_bps: float = 1e3
    high_bps: float = 1e11
    base_rtt_s: float = math.inf
    samples: int = 0
    resolution_s: float = 3e-3
    burst_bytes: float = 0.0
    rate_samples: int = 0
    train_min_s: float = 0.05
    envelope: int = 2
    _bits: float = 0.0
    _seconds: float = 0.0
    _recent: deque[tuple[float, float]] = field(default_factory=deque)
    _drained: bool = False  # the last transfer emptied the bucket (it was larger than the burst)

    def observe_rtt(self, rtt_s: float) -> None:
        """An empty round trip: the part of every round trip that is not transfer."""
        self.base_rtt_s = min(self.base_rtt_s, max(rtt_s, 0.0))

    def transfer_s(self, round_trip_s: float, server_s: float) -> float:
        """The part of a round trip spent moving bytes, s."""
        base = 0.0 if math.isinf(self.base_rtt_s) else self.base_rtt_s
        return max(round_trip_s - server_s - base, 0.0)

    def expected_transfer_s(self, sent_bytes: int) -> float:
        """Time to move ``sent_bytes`` at the estimate (no burst assumed), s."""
        return 8.0 * sent_bytes / self.estimate_bps

    def observe_train(self, sizes_bytes: list[int], arrivals_s: list[float]) -> bool:
        """A train of messages sent back to back after an idle spell: learn the burst and the rate.

        The first messages pass in the burst; past the knee, messages arrive one per ``8 * size /
        rate``. The rate is the slope over the second half of the train, the burst the bytes that
        arrived beyond what that rate explains. Return whether the train went past the burst (else only
        a lower bound on the burst, the whole train, is kept).

        Args:
            sizes_bytes: Bytes of each message, in sending order.
            arrivals_s: When each message arrived (the server's clock: only differences count), s.
        """
        cumulative = np.cumsum(np.asarray(sizes_bytes, dtype=float))
        arrivals = np.asarray(arrivals_s, dtype=float) - arrivals_s[0]
        half = len(cumulative) // 2
        span_s = float(arrivals[-1] - arrivals[half - 1]) if half >= 2 else 0.0
        if half < 2 or span_s < self.resolution_s:  # it all fitted in the burst
            self.burst_bytes = max(self.burst_bytes, float(cumulative[-1]))
            return False
        # bytes = burst + rate/8 * time past the knee: a least-squares line through the second half
        slope, intercept = np.polyfit(arrivals[half - 1 :], cumulative[half - 1 :], 1)
        if slope <= 0:
            return False
        if span_s >= self.train_min_s:  # long enough for the machine's timing noise not to make the burst up
            self.burst_bytes = float(min(max(intercept, 0.0), cumulative[-1]))
        self._drained = True
        self._add(8.0 * float(slope), span_s)
        return True

    def observe(self, sent_bytes: int, round_trip_s: float, server_s: float, *,
                idle_s: float | None = None) -> float:
        """Add one transfer; return its raw rate ``8 * sent_bytes / transfer_s`` (clipped), bit/s.

        The bucket holds ``min(burst, rate * idle / 8)`` when the transfer starts, so the link's rate is
        ``max(8 * sent / (transfer + idle), 8 * (sent - burst) / transfer)`` (the first where the
        bucket did not fill in the idle spell, the second where it did); each is a lower bound.

        Args:
            sent_bytes: Bytes sent.
            round_trip_s: Send to reply, s.
            server_s: Time the server held the message, s.
            idle_s: Time since the previous transfer ended (None: unknown, or none before), s.
        """
        transfer = self.transfer_s(round_trip_s, server_s)
        raw = self.high_bps if transfer <= 0 else 8.0 * sent_bytes / transfer
        raw = min(max(raw, self.low_bps), self.high_bps)
        self.samples += 1
        if transfer < self.resolution_s:  # it fitted in the bucket: no rate, but a burst at least this big
            self.burst_bytes = max(self.burst_bytes, float(sent_bytes))
            self._drained = False
            return raw
        # the refill bound holds only where the bucket was empty when the idle spell began
        drained, self._drained = self._drained, sent_bytes > self.burst_bytes
        refilled = 0.0 if idle_s is None or not drained else 8.0 * sent_bytes / (transfer + max(idle_s, 0.0))
        if sent_bytes > self.burst_bytes:
            self._add(max(refilled, 8.0 * (sent_bytes - self.burst_bytes) / transfer), transfer)
        elif refilled > self.estimate_bps:  # inside the burst: evidence only where a bound excludes it
            self._add(refilled, transfer)
        elif raw < self.estimate_bps:
            self._add(raw, transfer)
        return raw

    def _add(self, rate_bps: float, seconds: float) -> None:
        """A rate sample weighted by its duration (a size-weighted window with geometric forgetting)."""
        self._recent.append((rate_bps, seconds))
        while len(self._recent) > self.envelope:
            self._recent.popleft()
        rate_bps, seconds = max(self._recent)
        keep = 0.0 if self.rate_samples == 0 else 1.0 - self.smoothing  # the first sample replaces the prior
        self._bits = keep * self._bits + rate_bps * seconds
        self._seconds = keep * self._seconds + seconds
        self.rate_samples += 1
        self.estimate_bps = min(max(self._bits / self._seconds, self.low_bps), self.high_bps)


@dataclass
class CutChooser:
    """The policy's cut for the estimate, changed only on sustained evidence.

    Attributes:
        model: The prepared model (its policy and cuts).
        hysteresis: Relative widening of the current cut's ranges (0.15: 15 % on each side).
        confirm: Requests in a row the estimate must point outside the current cut before it changes.
        current: The cut in use.
        switches: How many times the cut changed.
    """

    model: SplitModel
    hysteresis: float = 0.15
    confirm: int = 2
    current: Cut | None = None
    switches: int = 0
    _outside: int = 0

    def choose(self, rate_bps: float) -> Cut:
        """The cut to start the next request with."""
        if self.current is not None and any(
            lo / (1 + self.hysteresis) <= rate_bps <= hi * (1 + self.hysteresis)
            for lo, hi in self.current.ranges_bps
        ):
            self._outside = 0
            return self.current
        chosen = self.model.policy_cut(rate_bps)
        if self.current is None:
            self.current = chosen
            return chosen
        if chosen.cut_id == self.current.cut_id:
            self._outside = 0
            return chosen
        self._outside += 1
        if self._outside < self.confirm:
            return self.current
        self._outside = 0
        self.switches += 1
        self.current = chosen
        return chosen
