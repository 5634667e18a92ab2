"""The split solver against brute force on random DAGs and chains, and on hand-built cases."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from test_split_oracle import chain, closed_sets, link_figures, random_dag

from splitprune.errors import SplitpruneError
from splitprune.split import (
    InfeasibleSplitError,
    SplitOptions,
    SplitProblem,
    SplitSolver,
    WireFormat,
    evaluate,
)
from splitprune.split.mincut import solve_mincut


def _problem(seed: int, n: int = 9) -> SplitProblem:
    g, order = random_dag(seed, n)
    return SplitProblem.from_digraph(g, order, inputs=["v0"], output="output")


def _brute(problem, link, *, key, downlink=False, limits=None):
    """Best objective over all closed sets (None if none is feasible)."""
    limits = limits or {}
    best = None
    for x in closed_sets(problem):
        ev = evaluate(problem, x, link, downlink=downlink)
        if ev.latency_s > limits.get("deadline", np.inf) * (1 + 1e-12):
            continue
        if ev.total_energy_j > limits.get("energy", np.inf) * (1 + 1e-12):
            continue
        if ev.memory_bytes > limits.get("memory", np.inf):
            continue
        value = key(ev)
        best = value if best is None or value < best else best
    return best


def _energy(ev):
    return ev.total_energy_j


def _latency(ev):
    return ev.latency_s


@pytest.mark.parametrize("seed", range(200))
def test_unconstrained_energy_matches_brute_force_on_random_dags(seed):
    problem = _problem(seed)
    rate = float(np.random.default_rng(seed).choice([1e4, 1e5, 1e6, 1e7, 1e9]))
    link = link_figures(rate)
    best = _brute(problem, link, key=_energy)
    x_cut, value = solve_mincut(problem, problem.energy_costs(link))
    assert value == pytest.approx(best, rel=1e-9)
    assert evaluate(problem, x_cut, link).total_energy_j == pytest.approx(best, rel=1e-9)
    if seed % 4 == 0:  # the cvxpy LP relaxation path, cross-checked against the min-cut
        result = SplitSolver(problem).solve(link, SplitOptions(cross_check=True))
        assert result.solver == "cvxpy-highs-lp"
        assert result.objective_value == pytest.approx(best, rel=1e-7)
        assert result.cross_check == pytest.approx(best, rel=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_latency_and_downlink_objectives_match_brute_force(seed):
    problem = _problem(1000 + seed)
    link = link_figures(float(10 ** (4 + seed % 5)))
    downlink = seed % 2 == 0
    best = _brute(problem, link, key=_latency, downlink=downlink)
    x, _ = solve_mincut(problem, problem.latency_costs(link, downlink=downlink))
    assert evaluate(problem, x, link, downlink=downlink).latency_s == pytest.approx(best, rel=1e-9)


@pytest.mark.parametrize("seed", range(30))
def test_milp_with_side_constraints_matches_brute_force(seed):
    problem = _problem(2000 + seed, n=8)
    link = link_figures(float(10 ** (5 + seed % 3)))
    evs = [evaluate(problem, x, link) for x in closed_sets(problem)]
    rng = np.random.default_rng(seed)
    lat = sorted(e.latency_s for e in evs)
    eng = sorted(e.total_energy_j for e in evs)
    mem = sorted(e.memory_bytes for e in evs)
    limits = {}
    if seed % 3 != 1:
        limits["deadline"] = lat[int(rng.integers(0, len(lat)))]
    if seed % 3 != 2:
        limits["energy"] = eng[int(rng.integers(0, len(eng)))] * 1.05
    if seed % 2 == 0:
        limits["memory"] = float(mem[int(rng.integers(0, len(mem)))])
    options = SplitOptions(
        objective="energy" if seed % 2 else "latency", deadline_s=limits.get("deadline"),
        energy_budget_j=limits.get("energy"), memory_bytes=limits.get("memory"),
    )
    best = _brute(problem, link, key=_energy if seed % 2 else _latency, limits=limits)
    solver = SplitSolver(problem)
    if best is None:
        with pytest.raises(InfeasibleSplitError):
            solver.solve(link, options)
        return
    result = solver.solve(link, options)
    assert result.solver == "cvxpy-highs-milp"
    assert result.objective_value == pytest.approx(best, rel=1e-6, abs=1e-12)
    assert result.metrics.memory_bytes <= limits.get("memory", np.inf)


@pytest.mark.parametrize("seed", range(20))
def test_weighted_objective_matches_brute_force(seed):
    problem = _problem(3000 + seed)
    link = link_figures(1e6)
    alpha = 0.3
    local = evaluate(problem, problem.all_local(), link)

    def weighted(ev):
        return alpha * ev.total_energy_j / local.total_energy_j + (1 - alpha) * ev.latency_s / (
            local.latency_s
        )

    result = SplitSolver(problem).solve(link, SplitOptions(objective="weighted", alpha=alpha))
    assert result.objective_value == pytest.approx(_brute(problem, link, key=weighted), rel=1e-7)


@pytest.mark.parametrize("seed", range(30))
def test_chains_match_enumeration_of_every_cut_point(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    costs = [float(c) for c in rng.uniform(0, 1e-2, k)]
    sizes = [int(b) for b in rng.integers(10, 100000, k + 1)]
    g, order = chain(costs, sizes)
    problem = SplitProblem.from_digraph(g, order, inputs=["x"], output="output")
    link = link_figures(float(rng.choice([1e4, 1e6, 1e8])), energy_per_message_j=0.0)
    # cut after layer i: layers 1..i on the device, send layer i's output (i = k: all local)
    candidates = [sum(costs[:i]) + link.energy_per_byte_j * sizes[i] for i in range(k)]
    candidates.append(sum(costs))
    result = SplitSolver(problem).solve(link)
    assert result.objective_value == pytest.approx(min(candidates), rel=1e-9)


def test_residual_cut_sends_both_tensors_and_charges_a_shared_tensor_once():
    # x -> a -> {b, c}; b -> d; (c, d) -> add -> output. a is big, b/c/d cheap to send.
    g = nx.DiGraph()
    spec = {"x": (0.0, 2 * 10**6), "a": (1e-3, 10**6), "b": (1.0, 100), "c": (1.0, 100),
            "d": (1.0, 100), "add": (1.0, 100), "output": (0.0, 100)}
    for name, (e, b) in spec.items():
        g.add_node(name, energy_j=e, latency_s=e, out_bytes=b)
    g.add_edges_from([("x", "a"), ("a", "b"), ("a", "c"), ("b", "d"), ("c", "add"),
                      ("d", "add"), ("add", "output")])
    problem = SplitProblem.from_digraph(g, list(spec), inputs=["x"], output="output")
    link = link_figures(1e6, energy_per_byte_j=1e-6, energy_per_message_j=0.0)
    result = SplitSolver(problem).solve(link, SplitOptions(cross_check=True))
    # sending a (1 MB) once costs 1 J: less than 4 J of work or sending x (2 MB)
    assert [c.name for c in result.cut] == ["a"]
    assert result.cut[0].consumers == ("b", "c")
    assert result.sent_bytes == 10**6
    assert result.objective_value == pytest.approx(1e-3 + 1.0)
    # make a's output costly and b, c's cheap: the cut crosses the residual block (two tensors)
    g.nodes["a"]["out_bytes"] = 10**7
    g.nodes["b"]["energy_j"] = 1e-3
    g.nodes["c"]["energy_j"] = 1e-3
    problem = SplitProblem.from_digraph(g, list(spec), inputs=["x"], output="output")
    result = SplitSolver(problem).solve(link, SplitOptions(cross_check=True))
    assert sorted(c.name for c in result.cut) == ["b", "c"]
    assert result.objective_value == pytest.approx(3e-3 + 200e-6)


def test_all_local_and_full_offload_are_regular_candidates():
    g, order = chain([1.0, 1.0], [100, 10**6, 10**6])
    problem = SplitProblem.from_digraph(g, order, inputs=["x"], output="output")
    cheap = SplitSolver(problem).solve(link_figures(1e9, energy_per_byte_j=1e-9))
    assert cheap.device_nodes == ("x",)  # full offload: send the 100-byte input
    assert [c.name for c in cheap.cut] == ["x"]
    dear = SplitSolver(problem).solve(link_figures(1e3, energy_per_byte_j=1.0))
    assert dear.device_nodes == tuple(order) and dear.cut == ()  # all local sends nothing
    assert dear.metrics.transmission_energy_j == 0.0


def test_deadline_infeasible_names_the_constraint_and_best_value():
    g, order = chain([1e-2, 1e-2], [10**6, 10**6, 10**6])
    problem = SplitProblem.from_digraph(g, order, inputs=["x"], output="output")
    link = link_figures(1e6)  # full offload: 8 s transfer; all local: 2 ms
    with pytest.raises(InfeasibleSplitError) as info:
        SplitSolver(problem).solve(link, SplitOptions(deadline_s=1e-3))
    assert info.value.constraint == "deadline"
    assert info.value.best == pytest.approx(2e-3)
    assert "deadline" in str(info.value) and "2 ms" in str(info.value)


def test_memory_limit_forces_offload_and_reports_smallest_head():
    g, order = chain([1e-3, 1e-3], [10**4, 5000, 10])
    g.nodes["l1"]["param_bytes"] = 10**6
    problem = SplitProblem.from_digraph(g, order, inputs=["x"], output="output")
    link = link_figures(1e6)
    solver = SplitSolver(problem)
    assert solver.solve(link).device_nodes == tuple(order)  # energy prefers all local
    result = solver.solve(link, SplitOptions(memory_bytes=10**5))
    assert result.device_nodes == ("x",) and result.metrics.memory_bytes == 10**4
    with pytest.raises(InfeasibleSplitError) as info:
        solver.solve(link, SplitOptions(memory_bytes=5000))
    assert info.value.constraint == "memory" and info.value.best == 10**4


def test_joint_infeasibility_reports_best_under_the_other_constraint():
    g, order = chain([1e-2, 1e-2], [10**5, 10**5, 10**5])
    problem = SplitProblem.from_digraph(g, order, inputs=["x"], output="output")
    link = link_figures(1e9, energy_per_byte_j=1e-6, energy_per_message_j=0.0, rtt_s=0.0)
    # all local: 20 mJ, 2 ms. Offload at the input: 0.1 J, 0.81 ms. Each limit alone is met.
    options = SplitOptions(deadline_s=1e-3, energy_budget_j=5e-2)
    solver = SplitSolver(problem)
    assert solver.solve(link, SplitOptions(deadline_s=1e-3)).device_nodes == ("x",)
    assert solver.solve(link, SplitOptions(energy_budget_j=5e-2)).device_nodes == tuple(order)
    with pytest.raises(InfeasibleSplitError) as info:
        solver.solve(link, options)
    assert info.value.constraint == "deadline" and info.value.others == ("energy",)
    assert info.value.best == pytest.approx(2e-3)


def test_wire_formats_scale_float_tensors_only():
    assert WireFormat.parse("fp16").wire_bytes(4000, "float32") == 2000
    assert WireFormat.parse("int8").wire_bytes(4000, "float32") == 1008
    assert WireFormat.parse("ratio:4").wire_bytes(4000, "float32") == 1000
    assert WireFormat.parse("fp16").wire_bytes(800, "int64") == 800
    with pytest.raises(SplitpruneError):
        WireFormat.parse("fp8")


def test_bad_options_are_user_errors():
    with pytest.raises(SplitpruneError):
        SplitOptions(objective="speed")
    with pytest.raises(SplitpruneError):
        SplitOptions(deadline_s=-1.0)
    with pytest.raises(SplitpruneError):
        SplitOptions(deadline_s=1.0, method="mincut")
