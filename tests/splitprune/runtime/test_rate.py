import math

import numpy as np
import pytest

from splitprune.runtime.cuts import Cut
from splitprune.runtime.rate import CutChooser, RateEstimator

# Three cuts on ascending rate ranges, as a bandwidth policy gives them (bit/s).
CUTS = [Cut(name, name, (), (), (), ((lo, hi),), 0, np.zeros(1, bool))
        for name, lo, hi in (("all_local", 1e5, 4e6), ("split", 4e6, 9e6), ("full_offload", 9e6, 1e10))]


class _Policy:
    def policy_cut(self, rate_bps):
        return next(c for c in CUTS if c.ranges_bps[0][0] <= rate_bps <= c.ranges_bps[0][1])


def test_estimate_is_bytes_over_transfer_time_less_server_and_base_rtt():
    est = RateEstimator(20e6, smoothing=1.0)
    est.observe_rtt(0.002)
    rate = est.observe(125_000, round_trip_s=0.052, server_s=0.010)  # 40 ms of transfer: 25 Mbit/s
    assert rate == pytest.approx(25e6)
    assert est.estimate_bps == pytest.approx(25e6)


def test_smoothing_is_geometric_and_samples_are_clipped():
    est = RateEstimator(1e6, smoothing=0.5, low_bps=1e5, high_bps=1e9)
    est.observe(1000, 0.001, 0.0)  # the first sample replaces the prior
    assert est.estimate_bps == pytest.approx(8e6)
    est.observe(1000, 0.004, 0.0)  # 2 Mbit/s
    assert est.estimate_bps == pytest.approx(math.sqrt(8e6 * 2e6))
    est.observe(10**9, 0.0, 0.0)  # no measurable time: clipped to the top of the range
    assert est.estimate_bps == pytest.approx(math.sqrt(4e6 * 1e9))


def test_hysteresis_keeps_the_cut_near_a_boundary_and_switches_past_it():
    chooser = CutChooser(_Policy(), hysteresis=0.1)
    assert chooser.choose(20e6).kind == "full_offload"
    assert chooser.choose(8.5e6).kind == "full_offload"  # inside 9e6 / 1.1
    assert chooser.switches == 0
    assert chooser.choose(7e6).kind == "split"
    assert chooser.choose(9.5e6).kind == "split"  # inside 9e6 * 1.1
    assert chooser.choose(3e6).kind == "all_local"
    assert chooser.switches == 2


def test_a_falling_rate_crosses_within_a_few_samples():
    est, chooser = RateEstimator(50e6, smoothing=0.5), CutChooser(_Policy(), hysteresis=0.15)
    for _ in range(5):
        est.observe(150_000, 150_000 * 8 / 50e6, 0.0)
    assert chooser.choose(est.estimate_bps).kind == "full_offload"
    kinds = []
    for _ in range(10):
        est.observe(150_000, 150_000 * 8 / 6e6, 0.0)
        kinds.append(chooser.choose(est.estimate_bps).kind)
    assert "split" in kinds[:3] and set(kinds[kinds.index("split"):]) == {"split"}
