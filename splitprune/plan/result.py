"""Result types of the joint planner, each with ``to_dict()`` for ``--json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SplitpruneError
from ..link import LinkFigures
from ..split.problem import Evaluation, SplitProblem

__all__ = ["SCHEMA", "PlanInfeasibleError", "PlanPoint", "PlanResult", "PlanSweep"]

SCHEMA = "splitprune.plan/1"
CUT_NAMES = 3  # a plan's label names at most this many crossing tensors


class PlanInfeasibleError(SplitpruneError):
    """No plan within ``--max-prune`` meets the budget.

    Attributes:
        constraint: The binding constraint: ``deadline`` or ``energy``.
        limit: Its limit (s or J).
        best: The smallest value of that quantity any evaluated plan reaches (s or J).
        rate_bps: Uplink rate of the failing plan, bit/s.
    """

    _WHAT = {
        "deadline": ("deadline", "the fastest plan takes", "--deadline-ms"),
        "energy": ("device energy budget", "the most frugal plan uses", "--energy-budget-mj"),
    }

    def __init__(self, constraint: str, limit: float, best: float, max_prune: float, rate_bps: float) -> None:
        self.constraint, self.limit, self.best, self.rate_bps = constraint, limit, best, rate_bps
        what, best_text, flag = self._WHAT[constraint]
        unit = "ms" if constraint == "deadline" else "mJ"
        super().__init__(
            f"no plan meets the {what} of {limit * 1e3:.6g} {unit} at {rate_bps / 1e6:.4g} Mbit/s with "
            f"at most {max_prune:.3g} of the saliency removed: {best_text} {best * 1e3:.6g} {unit}; "
            f"relax {flag} to at least {best * 1e3:.6g} or raise --max-prune"
        )


@dataclass(frozen=True)
class PlanPoint:
    """One evaluated plan: a pruned model (a step of one candidate's trajectory) and its split.

    Attributes:
        candidate: The candidate cut whose device side was pruned (``all-local``, ``full-offload`` or
            ``cut:<tensors>``).
        step: Pruning step along that candidate's trajectory (0: unpruned).
        kind: ``joint`` (the split re-solved exactly for the pruned model) or ``prune-only`` (the
            all-local trajectory kept all local).
        rate_bps: Uplink rate, bit/s.
        metrics: The split's energy, latency, bytes and memory (as ``split`` reports them).
        device_mask: Which nodes run on the device (graph order).
        saliency_removed: Fraction of the model's total channel saliency the pruning removed.
        channels_removed: Fraction of the prunable channels removed.
        accuracy: Accuracy from the ``evaluate`` hook, when one was given.
        feasible: Whether the plan meets every budget.
        state: Index of the pruned model in the search's list of states.
    """

    candidate: str
    step: int
    kind: str
    rate_bps: float
    metrics: Evaluation
    device_mask: np.ndarray = field(repr=False)
    saliency_removed: float
    channels_removed: float
    accuracy: float | None
    feasible: bool
    state: int

    @property
    def energy_j(self) -> float:
        """Device compute + radio energy per inference, J."""
        return self.metrics.total_energy_j

    @property
    def latency_s(self) -> float:
        """End-to-end latency, s."""
        return self.metrics.latency_s

    def value(self, objective: str) -> float:
        """The objective's value: energy (J) or latency (s)."""
        return self.energy_j if objective == "energy" else self.latency_s

    def figures(self) -> dict[str, Any]:
        """The plan's figures with the field names of ``estimate`` and ``split``."""
        m = self.metrics
        return {
            "candidate": self.candidate, "step": self.step, "kind": self.kind,
            "energy_j": m.total_energy_j, "device_energy_j": m.device_energy_j,
            "transmission_energy_j": m.transmission_energy_j, "server_energy_j": m.server_energy_j,
            "latency_s": m.latency_s, "device_latency_s": m.device_latency_s,
            "transfer_latency_s": m.transfer_latency_s, "server_latency_s": m.server_latency_s,
            "sent_bytes": m.sent_bytes, "sent_tensors": m.sent_tensors, "memory_bytes": m.memory_bytes,
            "offloaded": m.offloaded, "device_nodes": int(self.device_mask.sum()),
            "saliency_removed": self.saliency_removed, "channels_removed": self.channels_removed,
            "accuracy": self.accuracy, "feasible": self.feasible,
        }


@dataclass(frozen=True)
class PlanResult:
    """The best plan at one rate, the two baselines at the same budget, and the Pareto front.

    Attributes:
        best: The chosen plan.
        prune_only: The best all-local pruned model meeting the budget (None if none does).
        split_only: The exact split of the unpruned model (None if it misses the budget).
        pareto: Joint plans not dominated in (objective, pruning cost), by ascending cost.
        prune_only_curve: Every all-local point, by ascending cost (for plots).
        points: How many plans were evaluated at this rate.
        problem: The best plan's pruned model as a split problem (for the cut and node rows).
        link: Effective link figures at this rate.
        pruned_layers: Module name -> (output channels before, after) for the best plan.
    """

    best: PlanPoint
    prune_only: PlanPoint | None
    split_only: PlanPoint | None
    pareto: tuple[PlanPoint, ...]
    prune_only_curve: tuple[PlanPoint, ...]
    points: int
    problem: SplitProblem = field(repr=False)
    link: LinkFigures
    pruned_layers: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The chosen plan named by what it does: its cut and its pruning.

        For example ``cut after add_4, 14 layers pruned, 15.4 % saliency``, ``full offload, unpruned``
        or ``all local, 3 layers pruned, 2.0 % saliency``.
        """
        p, x = self.problem, self.best.device_mask
        sent = [int(u) for u in np.flatnonzero(p.sent(x))]
        if not sent:
            where = "all local"
        elif set(sent) <= set(p.inputs):
            where = "full offload"
        else:
            names = [p.names[u] for u in sent]
            more = f" (+{len(names) - CUT_NAMES} more)" if len(names) > CUT_NAMES else ""
            where = f"cut after {', '.join(names[:CUT_NAMES])}{more}"
        layers = len(self.pruned_layers)
        if not layers:
            return f"{where}, unpruned"
        plural = "layer" if layers == 1 else "layers"
        return f"{where}, {layers} {plural} pruned, {self.best.saliency_removed * 100:.1f} % saliency"

    @property
    def trajectory(self) -> str:
        """Where the search found the plan, e.g. ``all-local step 7``.

        A detail: the candidate cut whose device side was pruned (the pruned model's exact split may
        then cut elsewhere) and the pruning step along it.
        """
        return f"{self.best.candidate} step {self.best.step}"

    @property
    def cut(self) -> list[dict[str, Any]]:
        """The tensors that cross in the best plan (names, shapes, bytes, server consumers)."""
        p, x = self.problem, self.best.device_mask
        rows = []
        for u in np.flatnonzero(p.sent(x)):
            rows.append({
                "name": p.names[u], "kind": p.kinds[u] if p.kinds else "",
                "output_shapes": [list(s) for s in p.output_shapes[u]] if p.output_shapes else [],
                "dtype": p.dtypes[u] if p.dtypes else "", "out_bytes": int(p.out_bytes[u]),
                "wire_bytes": int(p.wire_bytes[u]),
                "consumers": [p.names[v] for v in p.succs[u] if not x[v]],
            })
        return rows

    def to_dict(self, *, nodes: bool = True) -> dict[str, Any]:
        """The best plan's figures at the top level, then baselines, front and (optionally) node rows.

        ``plan`` names the plan (:attr:`label`); ``trajectory`` says where the search found it.
        """
        p, x = self.problem, self.best.device_mask
        document = {
            "plan": self.label,
            "trajectory": self.trajectory,
            **self.best.figures(),
            "rate_bps": self.link.rate_bps,
            "cut": self.cut,
            "pruned_layers": [
                {"module": name, "out_channels_before": a, "out_channels_after": b}
                for name, (a, b) in self.pruned_layers.items()
            ],
            "prune_only": None if self.prune_only is None else self.prune_only.figures(),
            "split_only": None if self.split_only is None else self.split_only.figures(),
            "pareto": [pt.figures() for pt in self.pareto],
            "points": self.points,
        }
        if nodes:
            document["nodes"] = [
                {
                    "name": p.names[v], "placement": "device" if x[v] else "server",
                    "energy_j": float(p.energy_j[v]), "latency_s": float(p.latency_s[v]),
                    "server_latency_s": float(p.server_latency_s[v]), "out_bytes": int(p.wire_bytes[v]),
                    "inputs": [p.names[u] for u in p.preds[v]],
                }
                for v in range(p.n)
            ]
        return document


@dataclass(frozen=True)
class PlanSweep:
    """Plans for one or more rates and how the search went.

    Attributes:
        plans: One result per rate, by ascending rate.
        objective: ``energy`` or ``latency``.
        constraints: Active budgets: ``energy_budget_j`` (J), ``deadline_s`` (s).
        max_prune: Largest saliency fraction a plan may remove.
        candidates: Names of the candidate cuts whose device sides were pruned.
        states: Pruned models evaluated (all candidates and steps, the unpruned one once).
        elapsed_s: Wall-clock time of the search, s.
        model, board, link_name, server, wire: What was planned.
        errors: Per-rate messages for rates where no plan meets the budget.
        histories: torch-pruning's pruning history of every evaluated state (by ``PlanPoint.state``),
            on the model as :func:`~splitprune.prune.adapters.adapt` rewrote it.
        rewritten: Blocks ``adapt`` replaced by prunable equivalents (YOLO's C2f as two convs) before
            planning; every state, the unpruned one included, is priced in that form.
    """

    plans: tuple[PlanResult, ...]
    objective: str
    constraints: dict[str, float]
    max_prune: float
    candidates: tuple[str, ...]
    states: int
    elapsed_s: float
    model: str = ""
    board: str | None = None
    link_name: str | None = None
    server: str | None = None
    wire: str = "fp32"
    errors: tuple[str, ...] = ()
    histories: tuple[tuple[tuple[str, bool, tuple[int, ...]], ...], ...] = field(default=(), repr=False)
    rewritten: tuple[str, ...] = ()

    def history(self, result: PlanResult) -> tuple[tuple[str, bool, tuple[int, ...]], ...]:
        """The pruning history that rebuilds ``result``'s pruned model from the unpruned one."""
        return self.histories[result.best.state]

    def to_dict(self) -> dict[str, Any]:
        """The ``splitprune plan --json`` document (schema ``splitprune.plan/1``).

        With one rate the best plan's figures sit at the top level; with a sweep the top level holds
        the plan at the lowest rate and ``plans`` holds one document per rate.
        """
        first = self.plans[0]
        head = {
            "schema": SCHEMA, "model": self.model, "board": self.board, "server": self.server,
            "wire": self.wire, "objective_kind": self.objective, "constraints": dict(self.constraints),
            "max_prune": self.max_prune,
            "link": {"name": self.link_name, **first.link.to_dict()},
        }
        document = {**head, **first.to_dict()}
        document["search"] = {
            "candidates": list(self.candidates), "states": self.states, "elapsed_s": self.elapsed_s,
        }
        if self.rewritten:
            document["search"]["rewritten"] = list(self.rewritten)
        if self.errors:
            document["search"]["infeasible_rates"] = list(self.errors)
        if len(self.plans) > 1:
            document["plans"] = [
                {"link": {"name": self.link_name, **r.link.to_dict()}, **r.to_dict(nodes=False)}
                for r in self.plans
            ]
        return document
