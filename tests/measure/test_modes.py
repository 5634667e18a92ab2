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


class _FakeStream:
    def wait_stream(self, other: object) -> None:
        pass


class _FakeGraph:
    def __init__(self) -> None:
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1


def test_graph_capture_records_one_replay_of_every_copy(monkeypatch: pytest.MonkeyPatch):
    """The CUDA calls are faked (no GPU here): the plumbing records the calls a replay will run."""
    import contextlib

    import measure.modes as modes

    phase = {"now": "eager"}
    seen: list[tuple[str, int]] = []
    graphs: list[_FakeGraph] = []

    @contextlib.contextmanager
    def side_stream(stream: object):
        phase["now"] = "warmup"
        yield
        phase["now"] = "eager"

    @contextlib.contextmanager
    def capture(graph: _FakeGraph):
        phase["now"] = "capture"
        yield
        phase["now"] = "eager"

    def make_graph() -> _FakeGraph:
        graphs.append(_FakeGraph())
        return graphs[-1]

    cuda = modes.torch.cuda
    monkeypatch.setattr(cuda, "Stream", _FakeStream)
    monkeypatch.setattr(cuda, "current_stream", _FakeStream)
    monkeypatch.setattr(cuda, "stream", side_stream)
    monkeypatch.setattr(cuda, "CUDAGraph", make_graph)
    monkeypatch.setattr(cuda, "graph", capture)
    state = {"i": 0}

    def call() -> None:  # a layer cycling through 3 copies, as measure.sweep builds it
        state["i"] = (state["i"] + 1) % 3
        seen.append((phase["now"], state["i"]))

    run, per_run = make_runner(call, mode="graph", device="cuda", copies=3, network=False)
    captured = [copy for when, copy in seen if when == "capture"]
    assert per_run == len(captured) == 21  # 7 passes over the 3 copies
    assert sorted(set(captured)) == [0, 1, 2] and captured.count(0) == 7
    assert sum(when == "warmup" for when, _ in seen) == 3 * per_run
    run()
    run()
    assert graphs[0].replays == 2 and len(seen) == 4 * per_run  # replays run no Python calls
