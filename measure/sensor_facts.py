"""What a sweep measures about its sensor and device before the first point (all in the run header).

1. The sensor's update period (:meth:`~measure.sensors.PowerSensor.probe`): how often the energy counter
   ticks or the power reading refreshes, and the sample rate the sampler achieves. The window plan
   (:func:`measure.window.plan_window`) follows from it.
2. Cold idle: settled idle power before the sweep has loaded the device.
3. Settled idle after load: a short load (matrix products), then the wait until power is stable and the
   idle power there. On an H100 this plateau (~127 W) is far above cold idle (~71 W) and lasts for many
   seconds, so it is the state between inferences; net energy is defined against it (every point
   re-reads it before its windows, see :mod:`measure.sweep`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .idle import IdleReading, settle_idle
from .sensors import PowerSensor, Probe
from .window import WindowPlan, plan_window

__all__ = ["SensorFacts", "block_power", "idle_block_s", "measure_sensor_facts", "time_only_plan"]


@dataclass(frozen=True)
class SensorFacts:
    """What the sweep measured about the sensor at its start.

    Attributes:
        plan: How long windows run.
        probe: The sensor's update period (None for time-only sensors).
        idle_cold: Idle before any load (None for time-only sensors).
        idle_after_load: Settled idle after a short load (None for time-only sensors).
    """

    plan: WindowPlan
    probe: Probe | None
    idle_cold: IdleReading | None
    idle_after_load: IdleReading | None

    def describe(self) -> str:
        """One line for people: update period, window plan, cold and settled idle."""
        plan = self.plan
        text = f"windows: {plan.target_s:.2f} s span + {plan.lead_s:.3f} s lead + {plan.tail_s:.3f} s tail"
        if self.probe is not None:
            text = (
                f"sensor updates every {self.probe.update_period_s * 1e3:.1f} ms ({self.probe.source}), "
                f"{self.probe.sample_rate_hz:.0f} samples/s; " + text
            )
        if self.idle_cold is not None and self.idle_after_load is not None:
            settled = "" if self.idle_after_load.settled else " (not settled: cap reached)"
            text += (
                f"; idle {self.idle_cold.power_w:.2f} W cold, {self.idle_after_load.power_w:.2f} W "
                f"settled after load in {self.idle_after_load.settle_s:.1f} s{settled}"
            )
        return text

    def header(self) -> dict[str, Any]:
        """Run-header keys (see the README's measuring section for their meaning)."""
        info: dict[str, Any] = {
            "window_target_s": self.plan.target_s,
            "window_lead_s": self.plan.lead_s,
            "window_tail_s": self.plan.tail_s,
            "window_quantisation": self.plan.quantisation,
        }
        if self.probe is not None:
            info.update(
                sensor_update_period_s=self.probe.update_period_s,
                sensor_update_source=self.probe.source,
                sensor_update_changes=self.probe.changes,
                sensor_sample_rate_hz=self.probe.sample_rate_hz,
            )
        if self.idle_cold is not None and self.idle_after_load is not None:
            info.update(
                idle_cold_w=self.idle_cold.power_w,
                idle_settled_w=self.idle_after_load.power_w,
                idle_settle_s=self.idle_after_load.settle_s,
                idle_settled=self.idle_after_load.settled,
                net_energy_reference="settled idle",
            )
        return info


def time_only_plan(window_s: float) -> WindowPlan:
    """The plan for sensors without energy: windows of ``window_s``, no lead or tail."""
    return WindowPlan(target_s=window_s, lead_s=0.0, tail_s=0.0, quantisation=0.0)


def block_power(sensor: PowerSensor, tail_s: float) -> Callable[[float], float]:
    """A block reader for :func:`measure.idle.settle_idle`: mean power over a window of the given seconds.

    ``tail_s`` is added to each block so that a counter ticks at least twice inside it.
    """

    def read(block_s: float) -> float:
        sensor.begin_window()
        time.sleep(block_s + tail_s)
        measurement = sensor.end_window()
        return math.nan if measurement.mean_power_w is None else measurement.mean_power_w

    return read


def idle_block_s(idle_s: float, update_period_s: float) -> float:
    """Length of one idle block: half of ``idle_s``, and at least 2.5 update periods."""
    return max(idle_s / 2, 2.5 * update_period_s)


def _load(device: str, seconds: float) -> None:
    size = 4096 if device == "cuda" else 256
    x = torch.randn(size, size, device=device)
    deadline_s = time.perf_counter() + seconds
    while time.perf_counter() < deadline_s:
        x @ x
        if device == "cuda":
            torch.cuda.synchronize()


def measure_sensor_facts(
    sensor: PowerSensor,
    *,
    device: str,
    window_s: float,
    min_samples: int,
    idle_s: float,
    idle_tolerance: float,
    idle_settle_max_s: float,
    probe_s: float,
) -> SensorFacts:
    """Probe the sensor, plan the windows, read cold idle, load the device and read settled idle.

    Args:
        sensor: The sweep's sensor.
        device: ``cpu`` or ``cuda`` (where the load runs).
        window_s: ``method.window_s``.
        min_samples: ``method.min_samples``.
        idle_s: ``method.idle_s``.
        idle_tolerance: ``method.idle_tolerance``.
        idle_settle_max_s: ``method.idle_settle_max_s``.
        probe_s: Seconds of probing and of load.
    """
    probe = sensor.probe(probe_s)
    if probe is None:
        return SensorFacts(time_only_plan(window_s), None, None, None)
    plan = plan_window(
        window_s=window_s,
        update_period_s=probe.update_period_s,
        sample_interval_s=sensor.interval_s,
        has_counter=sensor.has_counter,
        min_samples=min_samples,
    )
    read = block_power(sensor, plan.tail_s)
    block_s = idle_block_s(idle_s, probe.update_period_s)

    def idle() -> IdleReading:
        return settle_idle(read, block_s=block_s, tolerance=idle_tolerance, max_s=idle_settle_max_s)

    cold = idle()
    _load(device, probe_s)
    return SensorFacts(plan, probe, cold, idle())
