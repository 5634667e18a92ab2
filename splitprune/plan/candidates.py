"""Candidate cuts for the joint search, and the unconstrained exact split it re-uses.

The exact bandwidth policy of the unpruned model (objective only, no budget) over
``[rate / span, rate * span]`` gives the cuts that are optimal at some rate near the plan's. Pruning
shrinks device cost and the bytes of every tensor but the raw input, so cuts that lose on the
unpruned model can win after pruning: the optimal cuts of an optimistic model whose device costs and
non-input tensors shrink by ``max_prune / 2`` and ``max_prune``, at 7 rates over the same range, are
added. All-local and full offload always come first; at most ``max_candidates`` are kept, the others
ranked by the unpruned objective at the middle rate. Candidates are a heuristic: they decide which
device sides get pruned; the split of every pruned model is then solved exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..link import LinkProfile
from ..split import SplitOptions, SplitProblem, SplitSolver, bandwidth_policy
from ..split.mincut import solve_mincut
from ..split.problem import Costs

__all__ = ["candidate_cuts", "unconstrained_split"]


def unconstrained_split(solver: SplitSolver, problem: SplitProblem, costs: Costs) -> np.ndarray:
    """Optimal placement without side constraints: the compiled LP (integral here), else the min-cut.

    ``problem`` must have ``solver.problem``'s graph; only the costs differ.
    """
    sol = solver.model(integer=False, constraints=frozenset()).solve(costs)
    if sol.x is not None and sol.extra.get("max_fraction", 1.0) <= 1e-6 and problem.is_valid(sol.x):
        return np.asarray(sol.x, dtype=bool)
    x, _ = solve_mincut(problem, costs)  # a fractional LP vertex: fall back, still exact
    return x



def candidate_cuts(
    solver: SplitSolver, problem: SplitProblem, link: LinkProfile, rates: list[float], opts: Any
) -> list[tuple[str, frozenset[str]]]:
    """All-local, full offload and the cuts that are optimal near the plan's rates (module docstring).

    Returns:
        ``(name, device set)`` pairs: ``all-local``, ``full-offload``, then ``cut:<tensors sent>``.
    """
    low, high = rates[0] / opts.span, rates[-1] * opts.span
    policy = bandwidth_policy(solver, link, low, high, options=SplitOptions(objective=opts.objective))
    cuts = [frozenset(piece.device_nodes) for piece in policy.pieces if piece.feasible]
    not_input = np.ones(problem.n, dtype=bool)
    not_input[list(problem.inputs)] = False
    for fraction in (opts.max_prune / 2, opts.max_prune):
        if fraction <= 0:
            continue
        keep = 1.0 - fraction  # optimistic: device costs and pruned tensors shrink by the fraction
        shrunk = dataclasses.replace(
            problem, energy_j=problem.energy_j * keep, latency_s=problem.latency_s * keep,
            wire_bytes=np.where(not_input, np.ceil(problem.wire_bytes * keep), problem.wire_bytes),
        )
        for rate in np.geomspace(low, high, 7):
            fig = link.figures(float(rate))
            costs = shrunk.energy_costs(fig) if opts.objective == "energy" else shrunk.latency_costs(fig)
            x = unconstrained_split(solver, shrunk, costs)
            cuts.append(frozenset(problem.names[v] for v in np.flatnonzero(x)))
    mid = link.figures(math.sqrt(rates[0] * rates[-1]))
    costs = problem.energy_costs(mid) if opts.objective == "energy" else problem.latency_costs(mid)
    everything = frozenset(problem.names)
    offload = frozenset(problem.names[i] for i in problem.inputs)
    found: dict[frozenset[str], tuple[float, str]] = {}
    for device in cuts:
        if device in (everything, offload) or device in found:
            continue
        x = np.array([n in device for n in problem.names])
        sent = problem.sent(x)
        value = costs.value(x.astype(float), sent.astype(float))
        found[device] = (value, "cut:" + ",".join(problem.names[u] for u in np.flatnonzero(sent)))
    ranked = sorted(found.items(), key=lambda item: item[1])
    chosen = [("all-local", everything), ("full-offload", offload)]
    chosen += [(label, device) for device, (_, label) in ranked[: opts.max_candidates - 2]]
    return chosen
