"""Idle power is read once it has settled: a fake decay, the real H100 decay, and the cap."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from measure.idle import settle_idle


class FakeClock:
    def __init__(self) -> None:
        self.t_s = 0.0

    def __call__(self) -> float:
        return self.t_s


def _decaying(clock: FakeClock, plateau_w: float, extra_w: float, tau_s: float):
    """Block reader of a power that decays exponentially to a plateau (exact block means)."""

    def block(block_s: float) -> float:
        t0, t1 = clock.t_s, clock.t_s + block_s
        clock.t_s = t1
        decay_j = extra_w * tau_s * (math.exp(-t0 / tau_s) - math.exp(-t1 / tau_s))
        return plateau_w + decay_j / block_s

    return block


def test_settles_on_the_plateau_not_in_the_decay():
    clock = FakeClock()
    reading = settle_idle(
        _decaying(clock, 127.0, 570.0, 0.3), block_s=0.25, tolerance=0.02, max_s=5.0, clock=clock
    )
    assert reading.settled
    assert reading.power_w == pytest.approx(127.0, rel=0.03)
    assert 1.0 <= reading.settle_s <= 3.0  # waited out the decay, did not sit out the cap
    # the old method: 0.5 s of idle right after the load
    assert _decaying(FakeClock(), 127.0, 570.0, 0.3)(0.5) > 1.5 * 127.0


def test_already_settled_power_takes_two_blocks():
    clock = FakeClock()
    reading = settle_idle(lambda s: 71.0, block_s=0.25, tolerance=0.02, max_s=5.0, clock=clock)
    assert (reading.power_w, reading.settled, reading.blocks) == (71.0, True, 2)


def test_the_cap_bounds_the_wait_and_says_so():
    clock = FakeClock()
    reading = settle_idle(
        _decaying(clock, 100.0, 500.0, 2.0), block_s=0.25, tolerance=0.02, max_s=2.0, clock=clock
    )
    assert not reading.settled
    assert 2.0 <= reading.settle_s <= 2.25
    assert reading.power_w > 100.0  # the last block, still in the decay


def test_nan_readings_never_settle():
    reading = settle_idle(lambda s: math.nan, block_s=0.25, tolerance=0.02, max_s=5.0, clock=FakeClock())
    assert not reading.settled and reading.blocks == 2


def test_the_real_h100_decay_settles_on_its_127_w_plateau(h100_data: Path):
    """Replay the power NVML reported every 250 ms after a heavy load (probe_eager_vs_graph.txt)."""
    trace_w = json.loads((h100_data / "probe_eager_vs_graph.txt").read_text().strip().splitlines()[-1])
    assert trace_w[0] > 600 and len(trace_w) >= 20
    clock, blocks = FakeClock(), iter(trace_w)

    def block(block_s: float) -> float:
        clock.t_s += block_s
        return next(blocks)

    reading = settle_idle(block, block_s=0.25, tolerance=0.02, max_s=5.0, clock=clock)
    assert reading.settled
    assert reading.power_w == pytest.approx(min(trace_w), rel=0.01)  # the plateau, ~127 W
    assert reading.settle_s >= 1.25  # not inside the ~1.3 s decay
