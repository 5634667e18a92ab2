import numpy as np
import pytest

from splitprune.runtime.cuts import Cut
from splitprune.runtime.rate import CutChooser, RateEstimator

# Three cuts on ascending rate ranges, as a bandwidth policy gives them (bit/s), and what each sends.
RANGES = (("all_local", 1e5, 4.1e6), ("split", 4.1e6, 9.4e6), ("full_offload", 9.4e6, 1e10))
CUTS = [Cut(name, name, (), (), (), ((lo, hi),), 0, np.zeros(1, bool)) for name, lo, hi in RANGES]
SENDS = {"all_local": 0, "split": 50_000, "full_offload": 150_000}


class _Policy:
    def policy_cut(self, rate_bps):
        return next(c for c in CUTS if c.ranges_bps[0][0] <= rate_bps <= c.ranges_bps[0][1])


class _TokenBucket:
    """``tc ... tbf`` in miniature: ``burst_bytes`` pass at once after an idle spell, the rest at the rate."""

    def __init__(self, rate_bps, burst_bytes):
        self.rate_bps, self.burst_bytes = rate_bps, burst_bytes
        self.tokens, self.at_s = float(burst_bytes), 0.0

    def send(self, now_s, size):
        """Seconds the link needs for ``size`` bytes sent at ``now_s``."""
        self.tokens = min(self.burst_bytes, self.tokens + self.rate_bps / 8 * (now_s - self.at_s))
        if size <= self.tokens:
            self.tokens -= size
            seconds = 2e-4
        else:
            seconds = (size - self.tokens) * 8 / self.rate_bps
            self.tokens = 0.0
        self.at_s = now_s + seconds
        return seconds


def _device_loop(phases, *, gap_s, train=True, prior_bps=20e6, delay_s=0.0):
    """Requests back to back (``gap_s`` of head, tail and bookkeeping between transfers) on ``phases``
    of ``(requests, rate_bps, burst_bytes)``; returns the cut kinds, the switches and the estimates.

    ``delay_s``: mean of an exponential delay added to each measured transfer (a busy machine).
    """
    delays = np.random.default_rng(7).exponential(delay_s, 1000) if delay_s else np.zeros(1000)
    est, chooser = RateEstimator(prior_bps), CutChooser(_Policy(), hysteresis=0.15, confirm=2)
    link = _TokenBucket(phases[0][1], phases[0][2])
    now, last_end = 0.0, None
    if train:  # 48 probes of 4 kB back to back, as Device.measure_link sends them
        arrivals, at = [], 0.0
        for _ in range(48):
            at += link.send(at, 4096)
            arrivals.append(at)
        est.observe_train([4096] * 48, arrivals)
        now = last_end = at + 0.01
    kinds, estimates = [], []
    for count, rate, burst in phases:
        link.rate_bps, link.burst_bytes = rate, burst
        for _ in range(count):
            cut = chooser.choose(est.estimate_bps)
            kinds.append(cut.kind)
            size = SENDS[cut.kind]
            if size:
                seconds = link.send(now, size)
                idle = None if last_end is None else now - last_end
                est.observe(size, seconds + delays[len(kinds)] + 0.002, 0.002, idle_s=idle)
                now += seconds
                last_end = now
            now += gap_s
            estimates.append(est.estimate_bps)
    return kinds, chooser.switches, estimates


def test_estimate_is_bytes_over_transfer_time_less_server_and_base_rtt():
    est = RateEstimator(20e6, smoothing=1.0)
    est.observe_rtt(0.002)
    raw = est.observe(125_000, round_trip_s=0.052, server_s=0.010)  # 40 ms of transfer: 25 Mbit/s
    assert raw == pytest.approx(25e6)
    assert est.estimate_bps == pytest.approx(25e6)


def test_the_window_is_weighted_by_transfer_time_so_one_short_fast_transfer_moves_it_little():
    est = RateEstimator(1e6, smoothing=0.5)
    est.observe(150_000, 0.2, 0.0)  # 6 Mbit/s over 200 ms
    est.observe(50_000, 0.012, 0.0)  # 33 Mbit/s over 12 ms
    bits, seconds = 0.5 * 1.2e6 + 0.4e6, 0.5 * 0.2 + 0.012
    assert est.estimate_bps == pytest.approx(bits / seconds)
    assert est.estimate_bps < 9.4e6  # a log-rate average of the two would read sqrt(6 * 33) = 14 Mbit/s


def test_a_transfer_inside_the_burst_carries_no_rate_and_teaches_the_burst():
    est = RateEstimator(6e6)
    est.observe(150_000, 0.2, 0.0)
    before = est.estimate_bps
    est.observe(50_000, 0.0004, 0.0)  # passed at once: no rate
    assert est.estimate_bps == before and est.burst_bytes == 50_000
    est.observe(40_000, 0.010, 0.0)  # inside the burst and faster than the estimate: no evidence
    assert est.estimate_bps == before
    est.observe(40_000, 0.160, 0.0)  # inside the burst but slow: the link is at most 2 Mbit/s
    assert est.estimate_bps < before
    est.observe(10**9, 1.0, 0.0)  # an absurd sample stays inside the clip range
    assert est.low_bps <= est.estimate_bps <= est.high_bps


def test_the_bytes_beyond_the_burst_and_the_refill_in_the_idle_time_give_the_rate():
    est = RateEstimator(1e6, smoothing=1.0, burst_bytes=8_000)
    # bucket full after a long idle spell: the 42 kB beyond the burst took 59 ms -> 5.7 Mbit/s
    est.observe(50_000, 42_000 * 8 / 5.7e6, 0.0, idle_s=1.0)
    assert est.estimate_bps == pytest.approx(5.7e6)
    est = RateEstimator(1e6, smoothing=1.0, burst_bytes=96_000, envelope=1)
    est.observe(150_000, 54_000 * 8 / 6e6, 0.0, idle_s=1.0)  # a full bucket, then 54 kB at 6 Mbit/s
    assert est.estimate_bps == pytest.approx(6e6)
    # right after it, the bucket refilled for 30 ms only (22.5 kB at 6 Mbit/s): 27.5 kB took 37 ms
    est.observe(50_000, 27_500 * 8 / 6e6, 0.0, idle_s=0.030)
    assert est.estimate_bps == pytest.approx(6e6)
    est.observe(50_000, 0.080, 0.0, idle_s=0.030)  # the last one left the bucket part full: no refill bound
    assert est.estimate_bps == pytest.approx(5e6)  # only 8 * 50 kB / 80 ms, below the estimate, counts


def test_a_train_of_probes_measures_the_burst_and_the_rate():
    link, arrivals, at = _TokenBucket(6e6, 96_000), [], 0.0
    for _ in range(12):
        at += link.send(at, 16_384)
        arrivals.append(at)
    est = RateEstimator(20e6)
    assert est.observe_train([16_384] * 12, arrivals)
    assert est.estimate_bps == pytest.approx(6e6, rel=1e-6)
    assert est.burst_bytes == pytest.approx(96_000, rel=0.01)
    link, arrivals, at = _TokenBucket(50e6, 8_000), [], 0.0
    for _ in range(48):
        at += link.send(at, 4096)
        arrivals.append(at)
    fast = RateEstimator(20e6)
    assert fast.observe_train([4096] * 48, arrivals)  # 15 ms past the burst: too short to believe one
    assert fast.estimate_bps == pytest.approx(50e6, rel=1e-6) and fast.burst_bytes == 0
    small = RateEstimator(20e6)
    assert not small.observe_train([1000] * 12, [1e-4 * i for i in range(1, 13)])  # all in the burst
    assert small.burst_bytes == 12_000 and small.estimate_bps == 20e6


@pytest.mark.parametrize(("gap_s", "delay_s"), [(0.03, 0.0), (0.1, 0.0), (0.1, 0.015)])
def test_a_steady_bucket_with_a_large_burst_does_not_flap(gap_s, delay_s):
    """6 Mbit/s, 96 kB burst: the 50 kB cut fits in the bucket and reads fast, the full frame slow."""
    kinds, switches, estimates = _device_loop([(60, 6e6, 96_000)], gap_s=gap_s, delay_s=delay_s)
    assert switches <= 2
    assert set(kinds[10:]) == {"split"}
    assert estimates[-1] == pytest.approx(6e6, rel=0.1 if delay_s == 0 else 0.3)


def test_the_same_bucket_without_the_train_flaps_which_is_why_the_device_measures_it():
    _, switches, _ = _device_loop([(60, 6e6, 96_000)], gap_s=0.03, train=False)
    assert switches > 2


@pytest.mark.parametrize(("gap_s", "delay_s"), [(0.03, 0.0), (0.1, 0.0), (0.1, 0.015)])
def test_a_drop_from_50_to_5_7_mbits_moves_to_the_intermediate_cut_and_stays(gap_s, delay_s):
    kinds, switches, _ = _device_loop([(10, 50e6, 8_000), (30, 5.7e6, 8_000)], gap_s=gap_s, delay_s=delay_s)
    assert set(kinds[:10]) == {"full_offload"}
    first = kinds.index("split")
    assert 10 < first <= 15 and set(kinds[first:]) == {"split"} and switches == 1


def test_a_rise_back_to_50_mbits_returns_to_full_offload():
    kinds, _, _ = _device_loop([(10, 5.7e6, 8_000), (20, 50e6, 8_000)], gap_s=0.03)
    assert kinds[:10].count("split") >= 7 and set(kinds[-10:]) == {"full_offload"}


def test_hysteresis_keeps_the_cut_near_a_boundary_and_switches_past_it():
    chooser = CutChooser(_Policy(), hysteresis=0.1, confirm=1)
    assert chooser.choose(20e6).kind == "full_offload"
    assert chooser.choose(8.6e6).kind == "full_offload"  # inside 9.4e6 / 1.1
    assert chooser.switches == 0
    assert chooser.choose(7e6).kind == "split"
    assert chooser.choose(10e6).kind == "split"  # inside 9.4e6 * 1.1
    assert chooser.choose(3e6).kind == "all_local"
    assert chooser.switches == 2


def test_one_odd_estimate_does_not_switch_two_in_a_row_do():
    chooser = CutChooser(_Policy(), hysteresis=0.1, confirm=2)
    assert chooser.choose(20e6).kind == "full_offload"
    assert chooser.choose(5e6).kind == "full_offload"  # one sample outside: kept
    assert chooser.choose(20e6).kind == "full_offload"  # back inside: the count starts again
    assert chooser.choose(5e6).kind == "full_offload"
    assert chooser.choose(5e6).kind == "split" and chooser.switches == 1
