"""Hand-made DAGs and a brute-force oracle for the split tests (no torch), and their own checks."""

from __future__ import annotations

import networkx as nx
import numpy as np

from splitprune.link import LinkFigures
from splitprune.split import SplitProblem
from splitprune.split.problem import closed_placements


def random_dag(
    seed: int, n: int = 9, *, max_preds: int = 3, window: int | None = None
) -> tuple[nx.DiGraph, list[str]]:
    """A random DAG with one input and an output node reading every sink.

    ``window`` limits predecessors to the previous ``window`` nodes (short skips, like real nets).
    """
    rng = np.random.default_rng(seed)
    g = nx.DiGraph()
    names = [f"v{i}" for i in range(n)]
    g.add_node(names[0], kind="input", energy_j=0.0, latency_s=0.0,
               out_bytes=int(rng.integers(1000, 20000)))
    for i in range(1, n):
        g.add_node(
            names[i], kind="conv", energy_j=float(rng.uniform(0, 2e-3)),
            latency_s=float(rng.uniform(0, 2e-3)), server_latency_s=float(rng.uniform(0, 2e-4)),
            out_bytes=int(rng.integers(0, 20000)), param_bytes=int(rng.integers(0, 5000)),
            is_tensor=bool(rng.random() > 0.1),
        )
        first = 0 if window is None else max(0, i - window)
        k = int(rng.integers(1, min(i - first, max_preds) + 1))
        for p in rng.choice(np.arange(first, i), size=k, replace=False):
            g.add_edge(names[int(p)], names[i])
    g.add_node("output", kind="output", energy_j=0.0, latency_s=0.0, out_bytes=400)
    for v in names:
        if g.out_degree(v) == 0:
            g.add_edge(v, "output")
    return g, [*names, "output"]


def chain(costs_j: list[float], out_bytes: list[int]) -> tuple[nx.DiGraph, list[str]]:
    """input -> l1 -> ... -> output with the given per-layer energies and output bytes."""
    g = nx.DiGraph()
    order = ["x", *[f"l{i}" for i in range(1, len(costs_j) + 1)], "output"]
    g.add_node("x", kind="input", energy_j=0.0, latency_s=0.0, out_bytes=out_bytes[0])
    for i, (e, b) in enumerate(zip(costs_j, out_bytes[1:], strict=False), start=1):
        g.add_node(f"l{i}", kind="conv", energy_j=e, latency_s=e / 10, out_bytes=b)
    g.add_node("output", kind="output", energy_j=0.0, latency_s=0.0, out_bytes=out_bytes[-1])
    nx.add_path(g, order)
    return g, order


closed_sets = closed_placements  # the exhaustive oracle, shared with the benchmark


def simulate_memory(problem: SplitProblem, x: np.ndarray) -> int:
    """Independent memory oracle: run the head in order, free tensors after their last use."""
    live: dict[int, int] = {}
    peak = 0
    sent = {u for u in range(problem.n) if x[u] and any(not x[v] for v in problem.succs[u])}
    for t in range(problem.n):
        if not x[t]:
            continue
        size = 0 if t == problem.output else int(problem.out_bytes[t])
        peak = max(peak, sum(live.values()) + size)
        live[t] = size
        for u in list(live):
            later = [v for v in problem.succs[u] if x[v] and v > t]
            if u not in sent and not later:
                del live[u]
    return int(problem.param_bytes[x].sum()) + peak


def link_figures(rate_bps: float = 2e6, **overrides: float) -> LinkFigures:
    """Wi-Fi-like figures with a fixed message cost and RTT."""
    values = dict(
        rate_bps=rate_bps, energy_per_byte_j=8 * 2.8e-7 + 8 * 0.13 / rate_bps,
        energy_per_message_j=1e-5, latency_per_byte_s=8 / rate_bps, latency_per_message_s=1e-5,
        rtt_s=5e-3, result_energy_per_byte_j=1e-7, result_latency_per_byte_s=1e-7,
    )
    values.update(overrides)
    return LinkFigures(**values)


def _diamond() -> SplitProblem:
    g = nx.DiGraph()
    for name in ("x", "a", "b", "c", "output"):
        g.add_node(name, energy_j=1.0, latency_s=1.0, out_bytes=10)
    g.add_edges_from([("x", "a"), ("x", "b"), ("a", "c"), ("b", "c"), ("c", "output")])
    return SplitProblem.from_digraph(g, ["x", "a", "b", "c", "output"], inputs=["x"], output="output")


def test_closed_sets_of_a_diamond_are_its_down_sets():
    sets = {tuple(np.flatnonzero(x)) for x in closed_sets(_diamond())}
    # {x}, {x,a}, {x,b}, {x,a,b}, {x,a,b,c}, {x,a,b,c,output}
    assert sets == {(0,), (0, 1), (0, 2), (0, 1, 2), (0, 1, 2, 3), (0, 1, 2, 3, 4)}


def test_memory_oracle_matches_problem_memory_on_random_dags():
    for seed in range(30):
        problem = SplitProblem.from_digraph(*random_dag(seed), inputs=["v0"], output="output")
        for x in closed_sets(problem):
            assert problem.memory_bytes(x) == simulate_memory(problem, x)
