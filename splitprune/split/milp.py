"""The split as a cvxpy program solved with HiGHS, compiled once and re-solved through parameters.

Variables: ``x_v`` (1 = device), ``sent_u >= x_u - x_v`` for every consumer ``v`` of ``u`` (one per
tensor, however many consumers). Precedence ``x_v <= x_u`` for every edge, ``x_input = 1``. The
objective ``dev @ x + srv @ (1 - x) + send @ sent`` has its coefficients in ``cp.Parameter`` vectors,
so a new rate or weight re-solves without recompiling (DPP). Matrices are built sparse and whole, so
compiling a 500-node graph takes a fraction of a second.

Without side constraints the constraint matrix is a network matrix in ``(x, min(x_v))`` form and the
LP relaxation is integral; the model is then built with continuous variables (``integer=False``).
Side constraints (deadline, energy budget, memory) make it a MILP. The memory constraint is exact for
the model in :mod:`.problem`: ``live[u, t] >= live[u, t + 1]``, ``live[u, t] >= x_t`` for consumers
``t``, ``live[u, last(u)] >= sent_u``, and a running sum carries sent tensors past their last consumer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from ..quiet import native_stdout_silenced
from .problem import Costs, SplitProblem

__all__ = ["CvxSplitModel", "CvxSolution"]

SIDE_CONSTRAINTS = ("deadline", "energy", "memory")


@dataclass
class CvxSolution:
    """Raw solver output: status, the device mask (rounded), objective and solver time in s."""

    status: str
    x: np.ndarray | None
    objective: float | None
    solve_time_s: float
    extra: dict[str, float] = field(default_factory=dict)


class CvxSplitModel:
    """One compiled cvxpy model for a problem and a set of side constraints.

    Args:
        problem: The split problem.
        integer: Binary ``x`` (MILP) or its LP relaxation.
        constraints: Which side constraints exist (subset of ``deadline``, ``energy``, ``memory``).
        minimize_memory: Minimise device memory instead of the cost vectors (diagnostics).
    """

    def __init__(
        self,
        problem: SplitProblem,
        *,
        integer: bool,
        constraints: frozenset[str] = frozenset(),
        minimize_memory: bool = False,
    ) -> None:
        self.problem = problem
        self.integer = integer
        n = problem.n
        senders = [u for u in range(n) if problem.succs[u]]
        self.senders = np.array(senders, dtype=int)
        col = {u: k for k, u in enumerate(senders)}
        edges = [(u, v) for u in senders for v in problem.succs[u]]
        m = len(edges)
        rows = np.arange(m)
        eu = np.array([u for u, _ in edges], dtype=int)
        ev = np.array([v for _, v in edges], dtype=int)
        # diff @ x = x_u - x_v per edge; pick @ sent = sent_u per edge
        diff = sp.csr_matrix(
            (np.r_[np.ones(m), -np.ones(m)], (np.r_[rows, rows], np.r_[eu, ev])), shape=(m, n)
        )
        pick = sp.csr_matrix((np.ones(m), (rows, [col[u] for u in eu])), shape=(m, len(senders)))

        self.x = cp.Variable(n, boolean=integer, name="x")
        self.sent = cp.Variable(len(senders), nonneg=True, name="sent")
        x, sent = self.x, self.sent
        cons = [diff @ x >= 0, pick @ sent - diff @ x >= 0, x[list(problem.inputs)] == 1]
        if not integer:
            cons += [x >= 0, x <= 1]
        self.params: dict[str, tuple[cp.Parameter, cp.Parameter, cp.Parameter]] = {}

        def linear(tag: str) -> cp.Expression:
            dev = cp.Parameter(n, nonneg=True, name=f"{tag}_dev")
            srv = cp.Parameter(n, nonneg=True, name=f"{tag}_srv")
            send = cp.Parameter(len(senders), nonneg=True, name=f"{tag}_send")
            self.params[tag] = (dev, srv, send)
            return dev @ x + srv @ (1 - x) + send @ sent

        self.limits: dict[str, cp.Parameter] = {}
        for name in ("deadline", "energy"):
            if name in constraints:
                self.limits[name] = cp.Parameter(nonneg=True, name=f"{name}_limit")
                cons.append(linear(name) <= self.limits[name])
        self.memory_peak: cp.Variable | None = None
        if "memory" in constraints or minimize_memory:
            peak_terms = self._memory_terms(cons, col)
            if minimize_memory:
                self.memory_peak = cp.Variable(name="memory_peak")
                cons.append(peak_terms <= self.memory_peak)
            else:
                self.limits["memory"] = cp.Parameter(nonneg=True, name="memory_limit")
                cons.append(peak_terms <= self.limits["memory"])
        if minimize_memory:
            objective = cp.Minimize(self.memory_peak)
        else:
            objective = cp.Minimize(linear("objective"))
        self.cp_problem = cp.Problem(objective, cons)

    def _memory_terms(self, cons: list, col: dict[int, int]) -> cp.Expression:
        """Per-step memory (a vector of length n) with its auxiliary variables; see module doc."""
        p = self.problem
        n = p.n
        act = p.activation_bytes().astype(float)
        scale = 1.0 / max(1.0, float(act.max(initial=0)), float(p.param_bytes.max(initial=0)))
        act = act * scale
        self.memory_scale = scale
        spans = [(u, t) for u in col for t in range(u + 1, max(p.succs[u]) + 1) if act[u] > 0]
        index = {pair: k for k, pair in enumerate(spans)}
        k = len(spans)
        live = cp.Variable(k, nonneg=True, name="live") if k else None
        if live is not None:
            chain_rows, chain_a, chain_b = [], [], []
            cons_rows, cons_x = [], []
            last_rows, last_sent = [], []
            for (u, t), j in index.items():
                if (u, t + 1) in index:
                    chain_a.append(j)
                    chain_b.append(index[(u, t + 1)])
                else:
                    last_rows.append(j)
                    last_sent.append(col[u])
                if t in p.succs[u]:
                    cons_rows.append(j)
                    cons_x.append(t)
            chain_rows = list(range(len(chain_a)))
            if chain_a:
                chain = sp.csr_matrix(
                    (np.r_[np.ones(len(chain_a)), -np.ones(len(chain_b))],
                     (np.r_[chain_rows, chain_rows], np.r_[chain_a, chain_b])), shape=(len(chain_a), k)
                )
                cons.append(chain @ live >= 0)
            cons.append(live[cons_rows] >= self.x[cons_x])
            cons.append(live[last_rows] >= self.sent[last_sent])
        # running sum of sent tensors past their last consumer: carry[t] = sum over last(u) < t
        senders = sorted(col)
        carry_m = sp.csr_matrix(
            ([act[u] for u in senders], ([max(p.succs[u]) for u in senders], [col[u] for u in senders])),
            shape=(n, len(senders)),
        )
        released = carry_m @ self.sent
        carry = cp.cumsum(released) - released
        weights = cp.Variable(name="weight_bytes")
        cons.append(weights == (p.param_bytes.astype(float) * scale) @ self.x)
        total = weights + carry + cp.multiply(act, self.x)
        if live is not None:
            rows = [t for (_, t) in spans]
            spread = sp.csr_matrix(([act[u] for (u, _) in spans], (rows, range(k))), shape=(n, k))
            total = total + spread @ live
        return total

    def solve(
        self,
        objective: Costs | None = None,
        *,
        limits: dict[str, float] | None = None,
        constraint_costs: dict[str, Costs] | None = None,
    ) -> CvxSolution:
        """Set the parameters and solve with HiGHS; the first call compiles, later ones re-use it.

        Nothing reaches stdout: the solver's log is off and its banner is sent to ``/dev/null``.
        """
        if objective is not None:
            self._set("objective", objective)
        for name, costs in (constraint_costs or {}).items():
            if name in self.params:
                self._set(name, costs)
        for name, value in (limits or {}).items():
            param = self.limits[name]
            param.value = value * self.memory_scale if name == "memory" else value
        # Every split, sweep and plan solves here. HiGHS's log is off through its options, but
        # highspy prints a banner on fd 1 when cvxpy builds the Highs object, before any option applies.
        with native_stdout_silenced():
            self.cp_problem.solve(solver=cp.HIGHS, verbose=False, output_flag=False, log_to_console=False)
        status = self.cp_problem.status
        stats = self.cp_problem.solver_stats
        solve_time = float(stats.solve_time or 0.0) if stats is not None else 0.0
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or self.x.value is None:
            return CvxSolution(status, None, None, solve_time)
        x = np.asarray(self.x.value) > 0.5
        value = float(self.cp_problem.value)
        if self.memory_peak is not None:
            value = value / self.memory_scale
        return CvxSolution(status, x, value, solve_time, {"max_fraction": _fractionality(self.x.value)})

    def _set(self, tag: str, costs: Costs) -> None:
        dev, srv, send = self.params[tag]
        dev.value = np.asarray(costs.dev, dtype=float)
        srv.value = np.asarray(costs.srv, dtype=float)
        send.value = np.asarray(costs.send, dtype=float)[self.senders]


def _fractionality(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.max(np.minimum(np.abs(v), np.abs(1 - v)), initial=0.0))

