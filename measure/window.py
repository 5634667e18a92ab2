"""The maths of one measurement window: integrals over a span, counter ticks, update periods, window sizes.

Pure functions on timestamped readings, so that the rules the sweep relies on are tested without
hardware:

- :func:`integrate_span`: trapezoid integral of sampled power over ``[t0, t1]``, the edges interpolated.
- :func:`counter_span`: energy from an energy counter between the first and the last counter tick that
  fall inside ``[t0, t1]``, so the energy covers exactly the time between two ticks.
- :func:`update_period_s`: how often a sensor's value changes (counter tick or power refresh period).
- :func:`plan_window`: how long a window runs, from the sensor's update period (counter windows: edge
  error under 1 %).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_WINDOW_S",
    "MIN_REFRESHES",
    "QUANTISATION",
    "WindowPlan",
    "change_times",
    "counter_span",
    "integrate_span",
    "plan_window",
    "update_period_s",
]

# Largest relative error the edges of a counter window may add to its energy.
QUANTISATION = 0.01
# Refreshes of a sensor without counter that one window's span holds at least.
MIN_REFRESHES = 20
# A window never runs longer than this, whatever the sensor (the header then states the larger error).
MAX_WINDOW_S = 10.0


def _interpolate(times_s: Sequence[float], values: Sequence[float], t_s: float) -> float:
    for i in range(1, len(times_s)):
        if times_s[i] >= t_s:
            dt = times_s[i] - times_s[i - 1]
            if dt <= 0:
                return values[i]
            w = (t_s - times_s[i - 1]) / dt
            return values[i - 1] + w * (values[i] - values[i - 1])
    return values[-1]


def integrate_span(times_s: Sequence[float], values: Sequence[float], t0_s: float, t1_s: float) -> float:
    """Trapezoid integral of ``values`` over ``[t0_s, t1_s]`` (clipped to the samples; edges interpolated).

    Returns 0 when the clipped span is empty or there are fewer than two samples.
    """
    if len(times_s) < 2:
        return 0.0
    t0_s, t1_s = max(t0_s, times_s[0]), min(t1_s, times_s[-1])
    if t1_s <= t0_s:
        return 0.0
    points = [(t0_s, _interpolate(times_s, values, t0_s))]
    points += [(t, v) for t, v in zip(times_s, values, strict=True) if t0_s < t < t1_s]
    points.append((t1_s, _interpolate(times_s, values, t1_s)))
    return math.fsum(0.5 * (v0 + v1) * (t1 - t0) for (t0, v0), (t1, v1) in itertools.pairwise(points))


def change_times(times_s: Sequence[float], values: Sequence[float]) -> list[tuple[float, float]]:
    """``(time, new value)`` of every change of ``values``; a change is dated midway between the two samples.

    The true change happened between the last sample with the old value and the first with the new one,
    so the midpoint is off by at most half a sampling interval.
    """
    return [
        (0.5 * (times_s[i - 1] + times_s[i]), values[i])
        for i in range(1, len(values))
        if values[i] != values[i - 1]
    ]


def counter_span(
    times_s: Sequence[float], counters_j: Sequence[float], t0_s: float, t1_s: float
) -> tuple[float, float, int]:
    """Energy between the first and the last counter tick inside ``[t0_s, t1_s]``.

    Args:
        times_s: Sample times in seconds.
        counters_j: The energy counter at each sample, in joules (it only changes at ticks).
        t0_s: Start of the span in which ticks are used.
        t1_s: End of that span.

    Returns:
        ``(energy_j, duration_s, ticks)``: energy and time between the two ticks, and the number of ticks
        inside the span; ``(nan, 0, ticks)`` when fewer than two ticks fall inside.
    """
    ticks = [(t, value) for t, value in change_times(times_s, counters_j) if t0_s <= t <= t1_s]
    if len(ticks) < 2:
        return math.nan, 0.0, len(ticks)
    (first_s, first_j), (last_s, last_j) = ticks[0], ticks[-1]
    return last_j - first_j, last_s - first_s, len(ticks)


def update_period_s(times_s: Sequence[float], values: Sequence[float]) -> float | None:
    """Median time between changes of ``values`` (a counter's tick or a power reading's refresh period).

    Returns None when the values change fewer than three times (the period is then unknown).
    """
    changes = [t for t, _ in change_times(times_s, values)]
    if len(changes) < 3:
        return None
    return statistics.median(b - a for a, b in itertools.pairwise(changes))


@dataclass(frozen=True)
class WindowPlan:
    """How long each window runs, from the sensor's update period.

    A window runs ``lead_s + target_s + tail_s`` seconds of back-to-back calls. Energy is taken over the
    span from ``lead_s`` after the first call to the last call (the sensor has caught up with the load by
    then); with an energy counter, between the first and the last tick inside that span.

    Attributes:
        target_s: Length of the span the energy is taken over, in seconds.
        lead_s: Calls run before the span opens, in seconds (one update period).
        tail_s: Calls run after ``target_s`` so that one more counter tick falls inside, in seconds.
        quantisation: Upper bound of the relative error the window's edges add to its energy: with a
            counter, one sampling interval over the span (a tick's time is known to that); without, one
            refresh period over the span, reached only if power changed at an edge, which the lead
            prevents under steady load.
    """

    target_s: float
    lead_s: float
    tail_s: float
    quantisation: float

    @property
    def run_s(self) -> float:
        """Seconds of calls per window."""
        return self.lead_s + self.target_s + self.tail_s


def plan_window(
    *,
    window_s: float,
    update_period_s: float,
    sample_interval_s: float,
    has_counter: bool,
    min_samples: int = 0,
) -> WindowPlan:
    """Size windows to the sensor.

    With an energy counter the counter is stale by up to a tick, so reading it at arbitrary edges errs by
    up to a tick's energy (about 12 % for 0.8 s windows and an H100's 90 ms tick). Instead the span's
    edges sit on ticks, each dated to within one sampling interval, so the error is
    ``sample_interval_s / span``: the span is made at least ``sample_interval_s / QUANTISATION`` long
    and holds at least two ticks, and the window runs 1.5 ticks past the target so a last tick falls in.

    Without a counter each reading is stale by up to one refresh period; the lead of one period puts
    both edges in steady load, where staleness shifts nothing, and the span holds
    :data:`MIN_REFRESHES` refreshes (and ``min_samples`` samples) so that their mean is not one noisy
    reading. Spans never exceed :data:`MAX_WINDOW_S` (or ``window_s`` when that is longer).

    Args:
        window_s: The grid's minimum window (``method.window_s``).
        update_period_s: The sensor's measured update period in seconds.
        sample_interval_s: The sampler's interval in seconds.
        has_counter: Whether energy comes from a counter.
        min_samples: Samples a window needs (sampled power only).
    """
    period_s = max(update_period_s, sample_interval_s)
    if has_counter:
        edge_s = sample_interval_s
        target_s = max(window_s, edge_s / QUANTISATION, 2 * period_s)
        tail_s = 1.5 * period_s
    else:
        edge_s = period_s
        target_s = max(window_s, MIN_REFRESHES * period_s, 1.25 * min_samples * sample_interval_s)
        tail_s = 0.0
    target_s = min(target_s, max(window_s, MAX_WINDOW_S))
    return WindowPlan(target_s=target_s, lead_s=period_s, tail_s=tail_s, quantisation=edge_s / target_s)
