"""Bandwidth policy: exact pieces vs brute force (capped power model), continuity, monotonicity."""

from __future__ import annotations

import numpy as np
import pytest
from test_split_oracle import closed_sets, random_dag

from splitprune.link import LinkProfile
from splitprune.split import (
    InfeasibleSplitError,
    SplitOptions,
    SplitProblem,
    SplitSolver,
    bandwidth_policy,
    evaluate,
)


def _link(*, slope: float = 1e-8, base: float = 0.5, message_j: float = 0.0, rtt_s: float = 5e-3,
          measured: tuple[float, float] = (0.0, 1e12)):
    values = {"uplink.rate_bps": "test", "uplink.power_w_per_bps": "test", "uplink.base_power_w": "test",
              "uplink.measured_rate_bps": "test", "rtt_s": "test", "energy_per_message_j": "test"}
    return LinkProfile.model_validate({
        "schema_version": 2, "link": {"name": "test", "technology": "test"}, "rtt_s": rtt_s,
        "energy_per_message_j": message_j,
        "uplink": {"rate_bps": 1e6, "power_w_per_bps": slope, "base_power_w": base,
                   "measured_rate_bps": list(measured)},
        "provenance": {"kind": "derived", "summary": "test", "values": values},
    })


def _problem(seed: int) -> SplitProblem:
    """A random DAG whose tensors shrink with depth, like a classifier's (so cuts move with rate)."""
    g, order = random_dag(seed, 9, max_preds=2, window=3)
    rng = np.random.default_rng(seed)
    for i, name in enumerate(order[:-1]):
        g.nodes[name]["out_bytes"] = int(40000 * 0.6**i * rng.uniform(0.5, 1.5))
    return SplitProblem.from_digraph(g, order, inputs=["v0"], output="output")


def _brute(problem, figures, key):
    return min(key(evaluate(problem, x, figures)) for x in closed_sets(problem))


pieces_seen: list[int] = []


@pytest.mark.parametrize("seed", range(40))
def test_exact_policy_is_optimal_inside_every_piece_and_continuous(seed):
    problem = _problem(4000 + seed)
    objective = ("energy", "latency")[seed % 2]
    link = _link(message_j=1e-5 if seed % 3 == 0 else 0.0)
    policy = bandwidth_policy(SplitSolver(problem), link, 1e3, 1e10,
                              options=SplitOptions(objective=objective))
    assert policy.exact
    pieces_seen.append(len(policy.pieces))
    assert policy.pieces[0].low_bps == pytest.approx(1e3)
    assert policy.pieces[-1].high_bps == pytest.approx(1e10)

    def key(ev):
        return ev.total_energy_j if objective == "energy" else ev.latency_s

    for piece in policy.pieces:
        rate = float(np.sqrt(piece.low_bps * piece.high_bps))
        best = _brute(problem, link.figures(rate), key)
        assert piece.objective_at(rate) == pytest.approx(best, rel=1e-9)
    for left, right in zip(policy.pieces, policy.pieces[1:], strict=False):
        assert left.high_bps == right.low_bps
        assert left.device_nodes != right.device_nodes
        at = left.high_bps  # the envelope is continuous: both lines meet at the breakpoint
        assert left.objective_at(at) == pytest.approx(right.objective_at(at), rel=1e-7)


@pytest.mark.parametrize("seed", range(40))
def test_faster_link_never_sends_fewer_bytes_nor_uses_more_device_energy(seed):
    problem = _problem(5000 + seed)
    link = _link()  # no per-message cost: bytes are the only rate-dependent term
    solver = SplitSolver(problem)
    rates = np.geomspace(1e3, 1e10, 25)
    results = [solver.solve(link.figures(float(r)), SplitOptions(method="mincut")) for r in rates]
    sent = [r.metrics.sent_bytes for r in results]
    compute = [r.metrics.device_energy_j for r in results]
    assert all(b >= a for a, b in zip(sent, sent[1:], strict=False))
    assert all(b <= a + 1e-15 for a, b in zip(compute, compute[1:], strict=False))
    policy = bandwidth_policy(solver, link, 1e3, 1e10)
    assert [p.sent_bytes for p in policy.pieces] == sorted(p.sent_bytes for p in policy.pieces)


@pytest.mark.parametrize("seed", range(6))
def test_constrained_policy_matches_solves_at_sampled_rates(seed):
    problem = _problem(6000 + seed)
    link = _link()
    solver = SplitSolver(problem)
    local = evaluate(problem, problem.all_local(), link.figures(1e6))
    options = SplitOptions(objective="energy", deadline_s=local.latency_s * 0.8)
    policy = bandwidth_policy(solver, link, 1e4, 1e9, options=options, samples=12)
    assert not policy.exact
    for rate in np.geomspace(1.2e4, 0.9e9, 7):
        piece = policy.piece_at(float(rate))
        try:
            expected = solver.solve(link.figures(float(rate)), options).objective_value
        except InfeasibleSplitError:
            assert not piece.feasible
            continue
        assert piece.feasible
        assert piece.objective_at(float(rate)) == pytest.approx(expected, rel=1e-6)


capped_pieces_seen: list[int] = []


@pytest.mark.parametrize("seed", range(30))
def test_capped_power_policy_equals_brute_force_on_a_fine_rate_grid(seed):
    """All closed cuts x 200 rates across both edges of the measured range (power held outside)."""
    problem = _problem(7000 + seed)
    rng = np.random.default_rng(seed)
    low = float(10 ** rng.uniform(4, 6))
    high = low * float(10 ** rng.uniform(0.5, 2.5))
    # a steep slope so that the cap binds: P(high) is several times P(low)
    link = _link(slope=float(10 ** rng.uniform(-8, -6)), base=float(rng.uniform(0.0, 1.0)),
                 message_j=1e-5 if seed % 3 == 0 else 0.0, measured=(low, high))
    objective = ("energy", "latency", "weighted")[seed % 3]
    policy = bandwidth_policy(SplitSolver(problem), link, low / 30, high * 30,
                              options=SplitOptions(objective=objective))
    assert policy.exact
    capped_pieces_seen.append(len(policy.pieces))
    placements = list(closed_sets(problem))
    solver = SplitSolver(problem)
    rates = np.geomspace(low / 30, high * 30, 200)
    assert (rates < low).any() and (rates > high).any()
    for rate in rates:
        figures = link.figures(float(rate))
        costs, _ = solver.objective_costs(figures, SplitOptions(objective=objective))
        best = min(costs.value(x.astype(float), problem.sent(x).astype(float)) for x in placements)
        piece = policy.piece_at(float(rate))
        assert piece.objective_at(float(rate)) == pytest.approx(best, rel=1e-9, abs=1e-15)
    # the edges of the measured range are piece boundaries, and every piece says on which side it is
    boundaries = [piece.high_bps for piece in policy.pieces[:-1]]
    for edge in (low, high):
        assert any(b == pytest.approx(edge, rel=1e-12) for b in boundaries)
    for piece in policy.pieces:
        mid = float(np.sqrt(piece.low_bps * piece.high_bps))
        assert piece.in_measured_range == link.in_measured_range(mid)


def test_capped_power_is_held_outside_the_measured_range():
    link = _link(slope=1e-7, base=0.2, measured=(1e6, 2e7))
    cap = 0.2 + 1e-7 * 2e7
    assert link.figures(1e8).power_w == pytest.approx(cap)
    assert link.figures(1e8).energy_per_byte_j == pytest.approx(8 * cap / 1e8)  # falls as 1/rate
    assert link.figures(1e5).power_w == pytest.approx(0.2 + 1e-7 * 1e6)  # held at the low edge
    assert not link.figures(1e8).in_measured_range and link.figures(5e6).in_measured_range


def test_random_policies_have_several_pieces():
    # runs after the parametrised cases above (same module, file order): the oracle is not vacuous
    assert len(pieces_seen) == 40 and sum(n >= 3 for n in pieces_seen) >= 10, pieces_seen
    assert len(capped_pieces_seen) == 30 and sum(n >= 5 for n in capped_pieces_seen) >= 5, capped_pieces_seen
