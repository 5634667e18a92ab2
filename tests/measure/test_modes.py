"""Execution modes on the CPU: eager runs the call itself; graph mode is refused with one line."""

from __future__ import annotations

import pytest

from measure import SweepError
from measure.modes import GRAPH_MIN_CALLS, calls_per_replay, make_runner


def test_eager_runs_the_call_itself():
    def call() -> int:
        return 3

    assert make_runner(call, mode="eager", device="cpu", copies=4, network=False) == (call, 1)


def test_graph_mode_needs_cuda():
    with pytest.raises(SweepError, match="mode graph needs CUDA graphs, not available on cpu") as info:
        make_runner(lambda: None, mode="graph", device="cpu", copies=1, network=False)
    assert "\n" not in str(info.value) and "--mode eager" in str(info.value)
    with pytest.raises(SweepError, match="unknown mode 'lazy'"):
        make_runner(lambda: None, mode="lazy", device="cpu", copies=1, network=False)


@pytest.mark.parametrize("copies", [1, 3, 7, 20, 256])
def test_a_replay_holds_every_copy_and_at_least_20_calls(copies: int):
    calls = calls_per_replay(copies, network=False)
    assert calls % copies == 0 and calls >= GRAPH_MIN_CALLS
    assert calls < GRAPH_MIN_CALLS + copies


def test_a_network_replays_one_forward():
    assert calls_per_replay(1, network=True) == 1
