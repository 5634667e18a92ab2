"""Bandwidth policy: exact pieces vs brute force, continuity at breakpoints, monotonicity."""

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


def _link(*, alpha: float = 1e-8, beta: float = 0.5, message_j: float = 0.0, rtt_s: float = 5e-3):
    values = {"uplink.rate_bps": "test", "uplink.alpha_w_per_bps": "test", "uplink.beta_w": "test",
              "rtt_s": "test", "energy_per_message_j": "test"}
    return LinkProfile.model_validate({
        "schema_version": 1, "link": {"name": "test", "technology": "test"}, "rtt_s": rtt_s,
        "energy_per_message_j": message_j,
        "uplink": {"rate_bps": 1e6, "alpha_w_per_bps": alpha, "beta_w": beta},
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
    sent = [r.metrics.bytes_sent for r in results]
    compute = [r.metrics.device_energy_j for r in results]
    assert all(b >= a for a, b in zip(sent, sent[1:], strict=False))
    assert all(b <= a + 1e-15 for a, b in zip(compute, compute[1:], strict=False))
    policy = bandwidth_policy(solver, link, 1e3, 1e10)
    assert [p.bytes_sent for p in policy.pieces] == sorted(p.bytes_sent for p in policy.pieces)


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


def test_random_policies_have_several_pieces():
    # runs after the parametrised cases above (same module, file order): the oracle is not vacuous
    assert len(pieces_seen) == 40 and sum(n >= 3 for n in pieces_seen) >= 10, pieces_seen
