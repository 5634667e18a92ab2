"""Solve the split: options, the re-usable solver, and the graph-level entry point."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SplitpruneError
from ..link import LinkFigures, LinkProfile
from .mincut import solve_mincut
from .problem import Costs, Evaluation, SplitProblem, evaluate
from .result import CutTensor, InfeasibleSplitError, SplitResult
from .wire import InputWire, WireFormat

__all__ = ["SplitOptions", "SplitSolver", "solve_split"]

OBJECTIVES = ("energy", "latency", "weighted")
METHODS = ("auto", "milp", "lp", "mincut")
_REL_TOL = 1e-7


@dataclass(frozen=True)
class SplitOptions:
    """What to optimise and under which constraints.

    Attributes:
        objective: ``energy`` (device compute + transmission, default), ``latency`` (end to end) or
            ``weighted``: ``alpha * E / E_local + (1 - alpha) * L / L_local`` with the all-local
            energy and latency as references.
        alpha: Weight of energy in the weighted objective, in [0, 1].
        deadline_s: End-to-end latency limit, s.
        energy_budget_j: Device energy limit (compute + transmission), J.
        memory_bytes: Device memory limit (head weights + peak activations), bytes.
        downlink: Charge receiving the result when it is produced on the server.
        method: ``auto`` (LP relaxation without side constraints, MILP with), ``milp``, ``lp`` or
            ``mincut`` (networkx only).
        cross_check: Also solve with the networkx min-cut and compare (no side constraints only).
    """

    objective: str = "energy"
    alpha: float = 0.5
    deadline_s: float | None = None
    energy_budget_j: float | None = None
    memory_bytes: float | None = None
    downlink: bool = False
    method: str = "auto"
    cross_check: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise SplitpruneError(f"unknown objective {self.objective!r}: use {', '.join(OBJECTIVES)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise SplitpruneError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.method not in METHODS:
            raise SplitpruneError(f"unknown method {self.method!r}: use {', '.join(METHODS)}")
        for name, value in self.limits().items():
            if not (value > 0 and math.isfinite(value)):
                raise SplitpruneError(f"the {name} limit must be positive and finite, got {value}")
        if self.limits() and self.method in ("lp", "mincut"):
            raise SplitpruneError(f"method {self.method!r} cannot handle side constraints; use milp")

    def limits(self) -> dict[str, float]:
        """Active side constraints: ``deadline`` (s), ``energy`` (J), ``memory`` (bytes)."""
        pairs = (("deadline", self.deadline_s), ("energy", self.energy_budget_j),
                 ("memory", self.memory_bytes))
        return {name: float(v) for name, v in pairs if v is not None}


class SplitSolver:
    """Solves one problem repeatedly (new rates, weights, limits) re-using compiled cvxpy models."""

    def __init__(self, problem: SplitProblem) -> None:
        self.problem = problem
        self._models: dict[tuple[Any, ...], Any] = {}
        self._local = problem.all_local()

    def model(self, *, integer: bool, constraints: frozenset[str], minimize_memory: bool = False) -> Any:
        """The compiled cvxpy model for this structure (built on first use)."""
        key = (integer, constraints, minimize_memory)
        if key not in self._models:
            from .milp import CvxSplitModel

            self._models[key] = CvxSplitModel(
                self.problem, integer=integer, constraints=constraints,
                minimize_memory=minimize_memory,
            )
        return self._models[key]

    # -- costs ---------------------------------------------------------------------------------
    def objective_costs(self, link: LinkFigures, options: SplitOptions) -> tuple[Costs, dict]:
        """Linear costs of the objective and its weights per J and per s."""
        p = self.problem
        if options.objective == "energy":
            return p.energy_costs(link, downlink=options.downlink), {"energy_per_j": 1.0,
                                                                      "latency_per_s": 0.0}
        if options.objective == "latency":
            return p.latency_costs(link, downlink=options.downlink), {"energy_per_j": 0.0,
                                                                       "latency_per_s": 1.0}
        local = evaluate(p, self._local, link)
        w_e = options.alpha / local.total_energy_j if local.total_energy_j > 0 else 0.0
        w_l = (1 - options.alpha) / local.latency_s if local.latency_s > 0 else 0.0
        costs = p.energy_costs(link, downlink=options.downlink).scaled(w_e) + p.latency_costs(
            link, downlink=options.downlink
        ).scaled(w_l)
        return costs, {"energy_per_j": w_e, "latency_per_s": w_l}

    def objective_value(self, ev: Evaluation, weights: dict[str, float]) -> float:
        """The objective of an evaluated placement."""
        return weights["energy_per_j"] * ev.total_energy_j + weights["latency_per_s"] * ev.latency_s

    # -- solving -------------------------------------------------------------------------------
    def place(self, link: LinkFigures, options: SplitOptions) -> tuple[np.ndarray, str, str, float]:
        """Optimal device mask, solver name, status and solve time; raise if infeasible."""
        costs, _ = self.objective_costs(link, options)
        limits = options.limits()
        start = time.perf_counter()
        if not limits and options.method in ("auto", "lp", "mincut"):
            if options.method == "mincut":
                x, _ = solve_mincut(self.problem, costs)
                return x, "networkx-mincut", "optimal", time.perf_counter() - start
            sol = self.model(integer=False, constraints=frozenset()).solve(costs)
            if sol.x is not None and sol.extra.get("max_fraction", 1.0) <= 1e-6:
                return sol.x, "cvxpy-highs-lp", sol.status, time.perf_counter() - start
            x, _ = solve_mincut(self.problem, costs)  # a fractional LP vertex: fall back, still exact
            return x, "networkx-mincut", "optimal", time.perf_counter() - start
        model = self.model(integer=True, constraints=frozenset(limits))
        sol = model.solve(costs, limits=limits, constraint_costs=self._constraint_costs(link, options))
        if sol.x is None:
            if sol.status.startswith("infeasible"):
                self._diagnose(link, options)
            raise SplitpruneError(f"the MILP solver returned status {sol.status!r}; try --method lp")
        return sol.x, "cvxpy-highs-milp", sol.status, time.perf_counter() - start

    def _constraint_costs(self, link: LinkFigures, options: SplitOptions) -> dict[str, Costs]:
        p, out = self.problem, {}
        if options.deadline_s is not None:
            out["deadline"] = p.latency_costs(link, downlink=options.downlink)
        if options.energy_budget_j is not None:
            out["energy"] = p.energy_costs(link, downlink=options.downlink)
        return out

    def _best(self, link: LinkFigures, options: SplitOptions, name: str, others: dict) -> float | None:
        """Smallest value of constraint ``name``'s quantity under the ``others`` limits."""
        p = self.problem
        if name == "memory":
            model = self.model(integer=True, constraints=frozenset(others), minimize_memory=True)
            sol = model.solve(limits=others, constraint_costs=self._constraint_costs(link, options))
            return None if sol.x is None else float(p.memory_bytes(sol.x))
        if name == "deadline":
            costs = p.latency_costs(link, downlink=options.downlink)
        else:
            costs = p.energy_costs(link, downlink=options.downlink)
        if not others:
            x, _ = solve_mincut(p, costs)
        else:
            model = self.model(integer=True, constraints=frozenset(others))
            sol = model.solve(costs, limits=others, constraint_costs=self._constraint_costs(link, options))
            if sol.x is None:
                return None
            x = sol.x
        ev = evaluate(p, x, link, downlink=options.downlink)
        return ev.latency_s if name == "deadline" else ev.total_energy_j

    def _diagnose(self, link: LinkFigures, options: SplitOptions) -> None:
        limits = options.limits()
        for name, limit in limits.items():
            best = self._best(link, options, name, {})
            if best is not None and best > limit * (1 + _REL_TOL):
                raise InfeasibleSplitError(name, limit, best)
        names = list(limits)
        for name in names:
            others = {k: v for k, v in limits.items() if k != name}
            best = self._best(link, options, name, others)
            if best is not None:
                raise InfeasibleSplitError(name, limits[name], best, tuple(others))
        raise InfeasibleSplitError(names[0], limits[names[0]], math.inf, tuple(names[1:]))

    def solve(self, link: LinkFigures, options: SplitOptions | None = None) -> SplitResult:
        """Optimal split at these link figures.

        Raises:
            InfeasibleSplitError: The side constraints cannot all be met.
        """
        options = options or SplitOptions()
        x, solver, status, elapsed = self.place(link, options)
        p = self.problem
        if not p.is_valid(x):  # pragma: no cover - guarded by the models; a bug if it happens
            raise RuntimeError("solver returned a placement that is not closed under predecessors")
        costs, weights = self.objective_costs(link, options)
        cross = None
        if options.cross_check and not options.limits():
            xc, value = solve_mincut(p, costs)
            mine = costs.value(x.astype(float), p.sent(x).astype(float))
            if abs(mine - value) > _REL_TOL * max(abs(value), 1e-12) + 1e-15:
                raise RuntimeError(f"min-cut ({value!r}) and {solver} ({mine!r}) disagree")
            cross = value
        down = options.downlink
        metrics = evaluate(p, x, link, downlink=down)
        sent = p.sent(x)
        act = p.activation_bytes()
        cut = tuple(
            CutTensor(
                name=p.names[u], kind=p.kinds[u] if p.kinds else "",
                output_shapes=p.output_shapes[u] if p.output_shapes else (),
                dtype=p.dtypes[u] if p.dtypes else "", out_bytes=int(p.out_bytes[u]),
                wire_bytes=int(p.wire_bytes[u]),
                consumers=tuple(p.names[v] for v in p.succs[u] if not x[v]),
            )
            for u in np.flatnonzero(sent)
        )
        nodes = tuple(
            {
                "name": p.names[v], "kind": p.kinds[v] if p.kinds else "",
                "placement": "device" if x[v] else "server",
                "energy_j": float(p.energy_j[v]), "latency_s": float(p.latency_s[v]),
                "server_latency_s": float(p.server_latency_s[v]),
                "out_bytes": int(p.out_bytes[v]), "wire_bytes": int(p.wire_bytes[v]),
                "is_tensor": bool(p.is_tensor[v]), "param_bytes": int(p.param_bytes[v]),
                "activation_bytes": int(act[v]),
                "inputs": [p.names[u] for u in p.preds[v]],
            }
            for v in range(p.n)
        )
        return SplitResult(
            objective=options.objective, objective_value=self.objective_value(metrics, weights),
            weights=weights, device_nodes=tuple(p.names[v] for v in np.flatnonzero(x)), cut=cut,
            metrics=metrics, all_local=evaluate(p, p.all_local(), link, downlink=down),
            full_offload=evaluate(p, p.full_offload(), link, downlink=down), link=link,
            solver=solver, status=status, solve_time_s=elapsed, constraints=options.limits(),
            nodes=nodes, cross_check=cross, wire=p.wire.name,
            input_wire=p.input_wire.name if p.input_wire is not None else p.wire.name,
        )


def solve_split(
    graph: Any,
    link: LinkProfile,
    *,
    options: SplitOptions | None = None,
    server: Any = None,
    wire: str | WireFormat = "fp32",
    input_wire: str | InputWire = "uint8",
    rate_bps: float | None = None,
) -> SplitResult:
    """Optimal device/server split of an annotated :class:`~splitprune.graph.LayerGraph`.

    Args:
        graph: A traced graph annotated with :func:`splitprune.annotate`.
        link: The link profile.
        options: Objective and constraints (default: minimise device energy).
        server: A :class:`~splitprune.link.ServerProfile` for server latency (default: zero).
        wire: Wire format of the intermediate tensors sent.
        input_wire: Wire format of the graph's input (``fp32``, ``uint8``, ``jpeg:Q`` or a byte count).
        rate_bps: Uplink rate overriding the profile's, bit/s.

    Raises:
        InfeasibleSplitError: The constraints cannot be met (names the binding one).
    """
    if getattr(graph, "board", None) is None:
        raise SplitpruneError("graph has no energy annotation; call splitprune.annotate first")
    fmt = wire if isinstance(wire, WireFormat) else WireFormat.parse(wire)
    fmt_in = input_wire if isinstance(input_wire, InputWire) else InputWire.parse(input_wire)
    from .deployed import split_problem

    problem = split_problem(graph, None, wire=fmt, input_wire=fmt_in, server=server)
    try:
        figures = link.figures(rate_bps)
    except ValueError as exc:
        raise SplitpruneError(f"bad --rate-bps: {exc}") from None
    result = SplitSolver(problem).solve(figures, options)
    from dataclasses import replace

    return replace(
        result, model=graph.name, board=graph.board, link_name=link.name,
        server=None if server is None else server.name,
    )
