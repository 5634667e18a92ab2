"""The joint search: candidate cuts, progressive device-side pruning, an exact split per pruned model.

1. **Candidates.** The exact bandwidth policy of the unpruned model (:func:`splitprune.split.
   bandwidth_policy`, objective only, no budget) over ``[rate / span, rate * span]`` (the sweep's
   range widened the same way) gives the cuts that are optimal at some rate near the plan's. Pruning
   shrinks device cost and the bytes of every tensor but the raw input, so cuts that lose on the
   unpruned model can win after it: the optimal cuts of an optimistic model, whose device costs and
   non-input tensors shrink by ``max_prune / 2`` and ``max_prune``, at 7 rates over the same range,
   are added. All-local and full offload are always candidates; at most ``max_candidates`` are kept
   (all-local, full offload and the others with the best unpruned objective at the middle rate); see
   :mod:`.candidates`.
2. **Trajectories.** Each candidate's device side is pruned step by step
   (:class:`~.trajectory.Trajectory`), ``step_saliency`` of the model's saliency per step, with the
   energy-aware importance charged for this candidate's device cost and cut bytes. A trajectory
   stops at ``max_prune`` (the bound on saliency removed), when nothing is left to prune, or as soon
   as it meets every budget at every rate (more pruning would only cost more; ``full_front`` goes
   on to ``max_prune`` for the Pareto front).
3. **Exact split per state.** Every pruned model (and the unpruned one) gets its optimal split at
   every rate: a min-cut/LP when the budget is on the objective's own metric, the MILP with the budget
   as a side constraint otherwise. The cvxpy model is compiled once: every pruned model has the same
   graph, only the cost parameters change.
4. **Choice.** At each rate the plan is the evaluated point that meets every budget with the least
   pruning cost (saliency removed; with an ``evaluate`` hook, accuracy lost first, floored at 0, then
   saliency removed), ties broken by the objective. Without a budget it is the point with the best
   objective within ``max_prune``.

The baselines are points of the same search: **split-only** is the unpruned model's exact split,
**prune-only** the all-local trajectory kept all local. So a joint plan is never worse than either
(lexicographically in pruning cost, then objective) by construction; it can be better because the
other trajectories prune the device side of a cut and the cut tensor's channels. The search is exact
in the split and heuristic in the pruning (greedy steps, ``step_saliency`` resolution, candidates from
the unpruned model's policy); it evaluates at most ``1 + (max_candidates - 1) * ceil(max_prune /
step_saliency)`` pruned models (full offload has nothing to prune), each at every rate.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ..board import BoardProfile
from ..deploy import Deployment
from ..energy import annotate
from ..errors import SplitpruneError
from ..graph import LayerGraph, trace
from ..link import LinkFigures, LinkProfile
from ..pricing import MetricPricer
from ..prune.adapters import adapt
from ..prune.groups import check_supported, output_layers
from ..split import InputWire, SplitProblem, SplitSolver, WireFormat, split_problem
from ..split.problem import Costs, evaluate
from .candidates import candidate_cuts, unconstrained_split
from .result import PlanInfeasibleError, PlanPoint, PlanResult, PlanSweep
from .trajectory import Baseline, PrunedState, Trajectory, widths_of

__all__ = ["PlanOptions", "plan"]

_REL_TOL = 1e-9


@dataclass(frozen=True)
class PlanOptions:
    """What the planner optimises, under which budget, and how far it searches.

    Attributes:
        objective: ``energy`` (device compute + radio, J) or ``latency`` (end to end, s).
        energy_budget_j: Device energy limit per inference (compute + radio), J.
        deadline_s: End-to-end latency limit, s.
        max_prune: Largest fraction of the model's channel saliency a plan may remove, in [0, 1].
        step_saliency: Saliency removed per pruning step (the search's resolution).
        max_candidates: Most candidate cuts pruned (all-local and full offload included).
        span: Candidate cuts come from the policy over ``[rate / span, rate * span]``.
        round_to: Channels per pruning chunk; None uses the board's kernel granularity.
        min_channels: No pruned layer keeps fewer output channels than this.
        max_ratio: No layer loses more than this fraction of its original output channels.
        ignore: Module names whose output channels are never pruned (output layers always are).
        wire: Wire format of the tensors sent (``fp32``, ``fp16``, ``int8``, ``ratio:R``); None: the
            board's (deployment's) precision, as ``split`` does.
        input_wire: How the input frame travels on full offload (``uint8``, ``fp32``, ``jpeg:Q``, bytes).
        full_front: Prune every trajectory to ``max_prune`` even after it meets the budget (a fuller
            Pareto front, at the cost of more pruned models).
    """

    objective: str = "energy"
    energy_budget_j: float | None = None
    deadline_s: float | None = None
    max_prune: float = 0.5
    step_saliency: float = 0.02
    max_candidates: int = 6
    span: float = 10.0
    round_to: int | None = None
    min_channels: int = 4
    max_ratio: float = 0.9
    ignore: tuple[str, ...] = ()
    wire: str | None = None
    input_wire: str = "uint8"
    full_front: bool = False

    def __post_init__(self) -> None:
        if self.objective not in ("energy", "latency"):
            raise SplitpruneError(f"unknown objective {self.objective!r}: use energy or latency")
        for name, value in self.limits().items():
            if not (value > 0 and math.isfinite(value)):
                raise SplitpruneError(f"the {name} limit must be positive and finite, got {value}")
        if not 0 <= self.max_prune <= 1:
            raise SplitpruneError(f"--max-prune must be in [0, 1], got {self.max_prune}")
        if not 0 < self.step_saliency <= 1:
            raise SplitpruneError(f"step_saliency must be in (0, 1], got {self.step_saliency}")
        if self.max_candidates < 2 or self.span < 1:
            raise SplitpruneError("max_candidates must be at least 2 and span at least 1")
        if self.round_to is not None and self.round_to < 1:
            raise SplitpruneError(f"round_to must be at least 1, got {self.round_to}")
        if not 0 < self.max_ratio <= 1:
            raise SplitpruneError(f"max_ratio must be in (0, 1], got {self.max_ratio}")

    def limits(self) -> dict[str, float]:
        """Active budgets: ``energy`` (J) and ``deadline`` (s)."""
        pairs = (("energy", self.energy_budget_j), ("deadline", self.deadline_s))
        return {name: float(v) for name, v in pairs if v is not None}

    @property
    def metric(self) -> str:
        """What the importance saves: the budget's metric when there is exactly one, else the objective."""
        limits = self.limits()
        if len(limits) == 1:
            return "energy" if "energy" in limits else "latency"
        return self.objective


class _Splitter:
    """The exact split of any pruned model of one graph, with the cvxpy models compiled once."""

    def __init__(self, problem0: SplitProblem, options: PlanOptions) -> None:
        self.solver = SplitSolver(problem0)
        self.problem0, self.options = problem0, options
        limits = options.limits()
        own = {"energy": "energy", "latency": "deadline"}[options.objective]
        self.milp = bool(set(limits) - {own})

    def _costs(self, problem: SplitProblem, figures: LinkFigures, metric: str) -> Costs:
        return problem.energy_costs(figures) if metric == "energy" else problem.latency_costs(figures)

    def best(self, problem: SplitProblem, figures: LinkFigures) -> tuple[np.ndarray, bool]:
        """Optimal device mask for the objective under the budgets, and whether it meets them."""
        if problem.preds != self.problem0.preds:  # pragma: no cover - pruning keeps the graph
            raise RuntimeError("a pruned model changed the graph structure")
        costs = self._costs(problem, figures, self.options.objective)
        limits = self.options.limits()
        if self.milp:
            model = self.solver.model(integer=True, constraints=frozenset(limits))
            cc = {"energy": self._costs(problem, figures, "energy"),
                  "deadline": self._costs(problem, figures, "latency")}
            sol = model.solve(costs, limits=limits, constraint_costs={k: cc[k] for k in limits})
            if sol.x is not None and problem.is_valid(sol.x):
                return sol.x, self.meets(problem, sol.x, figures)
        x = unconstrained_split(self.solver, problem, costs)
        return x, self.meets(problem, x, figures)

    def meets(self, problem: SplitProblem, x: np.ndarray, figures: LinkFigures) -> bool:
        """Whether placement ``x`` meets every budget."""
        ev = evaluate(problem, x, figures)
        values = {"energy": ev.total_energy_j, "deadline": ev.latency_s}
        return all(values[k] <= v * (1 + _REL_TOL) for k, v in self.options.limits().items())


def plan(
    model: nn.Module,
    example_inputs: torch.Tensor | tuple[torch.Tensor, ...],
    board: BoardProfile | Deployment,
    link: LinkProfile,
    *,
    rates_bps: Sequence[float] | None = None,
    server: object = None,
    options: PlanOptions | None = None,
    finetune: Callable[[nn.Module], None] | None = None,
    evaluate_fn: Callable[[nn.Module], float] | None = None,
    executor: Executor | None = None,
    name: str | None = None,
) -> PlanSweep:
    """The best joint (cut, pruning) plan of ``model`` at every rate (see the module docstring).

    Args:
        model: A CNN with real weights (not modified: every trajectory prunes a copy).
        example_inputs: One input batch (or a tuple), for tracing and torch-pruning.
        board: The deployment (or a board profile, deployed as it is).
        link: The link profile.
        rates_bps: Uplink rates to plan for, bit/s (default: the link's own rate).
        server: A :class:`~splitprune.link.ServerProfile` for server latency (default: free server).
        options: Objective, budgets and search bounds.
        finetune: Called on a copy of every pruned model before ``evaluate_fn``.
        evaluate_fn: Returns a pruned model's accuracy; the pruning cost is then the accuracy lost.
        executor: With ``evaluate_fn``, fine-tune and score the pruned models here, each submitted as
            soon as it is pruned (``finetune`` and ``evaluate_fn`` must then pickle). Nothing in the
            search waits for an accuracy, so the plan is the same as without it.
        name: Model name for reports.

    Raises:
        PlanInfeasibleError: At a single rate, no plan meets the budget (names the binding one).
        UnsupportedModelError: torch-pruning cannot prune this model safely.
    """
    started = time.perf_counter()
    board = Deployment.coerce(board).profile
    opts = options or PlanOptions()
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    fmt, fmt_in = WireFormat.parse(opts.wire or board.board.precision), InputWire.parse(opts.input_wire)
    rates = sorted(float(r) for r in (rates_bps or [link.figures().rate_bps]))
    try:
        figures = [link.figures(r) for r in rates]
    except ValueError as exc:
        raise SplitpruneError(f"bad --rate-bps: {exc}") from None
    label = name or type(model).__name__
    original = model
    model = copy.deepcopy(model)  # the caller's model stays as it was; the copy is rewritten to prune
    adaptation = adapt(model)  # as prune does: YOLO's C2f/C3k2/C2PSA as two convs, Detect/DFL kept
    training = model.training
    with torch.no_grad():  # steady state, as every pruned model is traced: a detector caches its anchors
        model.eval()(*inputs)  # eval: a training-mode batch norm would move its running statistics
    model.train(training)
    graph0 = annotate(trace(model, inputs, name=label), board)
    check_supported(graph0, model=model, kept=adaptation.kept)

    def to_problem(graph: LayerGraph) -> SplitProblem:
        return split_problem(graph, None, wire=fmt, input_wire=fmt_in, server=server)

    problem0 = to_problem(graph0)
    splitter = _Splitter(problem0, opts)
    ignored = tuple(dict.fromkeys([*adaptation.kept, *output_layers(graph0, model), *opts.ignore]))
    for module_name in opts.ignore:
        if module_name not in dict(model.named_modules()):
            raise SplitpruneError(f"--ignore {module_name!r} is not a module of the model")
    baseline = Baseline.build(model, inputs, graph0, board, ignored=ignored,
                              min_channels=opts.min_channels, max_ratio=opts.max_ratio)
    futures: dict[int, Future[float]] = {}  # state index -> its accuracy, when scored on `executor`

    def submit(index: int, m: nn.Module) -> None:
        assert executor is not None
        futures[index] = executor.submit(_accuracy, copy.deepcopy(m), finetune, evaluate_fn)  # type: ignore[arg-type]

    deferred = executor is not None and evaluate_fn is not None
    if deferred:
        submit(0, original)
    base_accuracy = None if deferred else _accuracy(original, finetune=finetune, evaluate_fn=evaluate_fn)
    candidates = candidate_cuts(splitter.solver, problem0, link, rates, opts)
    mid = link.figures(math.sqrt(rates[0] * rates[-1]))
    per_byte = mid.energy_per_byte_j if opts.metric == "energy" else mid.latency_per_byte_s
    cost = MetricPricer.of(board, "energy_j" if opts.metric == "energy" else "latency_s")
    round_to = opts.round_to or board.energy_j.conv_kernel_granularity

    states = [PrunedState("unpruned", 0, problem0, widths_of(graph0, model), 0.0, 0.0, (), base_accuracy)]
    points: list[PlanPoint] = []

    def visit(state: PrunedState, *, prune_only: bool) -> bool:
        """Evaluate one state at every rate; True when it meets the budgets at all of them.

        For the all-local trajectory (``prune_only``) the all-local placement must meet them too.
        """
        index = len(states) - 1
        met = True
        for fig in figures:
            x, ok = splitter.best(state.problem, fig)
            points.append(_point(state, "joint", fig, x, ok, index))
            if prune_only:
                local = state.problem.all_local()
                ok_local = splitter.meets(state.problem, local, fig)
                points.append(_point(state, "prune-only", fig, local, ok_local, index))
                ok = ok_local
            met = met and ok
        return met and bool(opts.limits()) and not opts.full_front

    local_met = visit(states[0], prune_only=True)
    joint_met = bool(opts.limits()) and not opts.full_front and all(
        p.feasible for p in points if p.kind == "joint"
    )
    score = None if evaluate_fn is None or deferred else (lambda m: _accuracy(m, finetune, evaluate_fn))
    for cand_name, device in candidates:
        if len(device) == len(problem0.inputs):
            continue  # full offload: nothing on the device to prune
        if local_met or (joint_met and cand_name != "all-local"):
            continue  # the unpruned model meets the budget: pruning cannot lower the cost
        traj = Trajectory(baseline, cand_name, device, cost=cost, per_byte=per_byte, start=problem0,
                          round_to=round_to, to_problem=to_problem)
        while traj.removed < opts.max_prune - 1e-12:
            room = opts.max_prune - traj.removed
            if not traj.step(min(opts.step_saliency, room), room):
                break
            states.append(traj.state(score))
            if deferred:
                submit(len(states) - 1, traj.model)
            if visit(states[-1], prune_only=cand_name == "all-local"):
                break

    if futures:  # fill in the accuracies scored on the executor
        scored = {i: float(f.result()) for i, f in futures.items()}
        states = [replace(s, accuracy=scored.get(i, s.accuracy)) for i, s in enumerate(states)]
        points = [replace(p, accuracy=states[p.state].accuracy) for p in points]
        base_accuracy = scored[0]
    results, errors = [], []
    for fig in figures:
        try:
            results.append(_choose(points, states, baseline, fig, opts, base_accuracy))
        except PlanInfeasibleError as exc:
            if len(figures) == 1:
                raise
            errors.append(str(exc))
    if not results:
        raise SplitpruneError(f"no plan meets the budget at any rate of the sweep: {errors[0]}")
    return PlanSweep(
        plans=tuple(results), objective=opts.objective,
        constraints={("energy_budget_j" if k == "energy" else "deadline_s"): v
                     for k, v in opts.limits().items()},
        max_prune=opts.max_prune, candidates=tuple(n for n, _ in candidates), states=len(states),
        elapsed_s=time.perf_counter() - started, model=label, board=board.name, link_name=link.name,
        server=getattr(server, "name", None), wire=fmt.name, errors=tuple(errors),
        histories=tuple(s.history for s in states), rewritten=adaptation.rewritten,
    )


def _accuracy(
    model: nn.Module, finetune: Callable[[nn.Module], None] | None,
    evaluate_fn: Callable[[nn.Module], float] | None,
) -> float | None:
    if evaluate_fn is None:
        return None
    import copy

    work = copy.deepcopy(model)
    if finetune is not None:
        finetune(work)
    return float(evaluate_fn(work))


def _point(state: PrunedState, kind: str, fig: LinkFigures, x: np.ndarray, ok: bool, index: int) -> PlanPoint:
    return PlanPoint(
        candidate=state.candidate, step=state.step, kind=kind, rate_bps=fig.rate_bps,
        metrics=evaluate(state.problem, x, fig), device_mask=np.asarray(x, dtype=bool),
        saliency_removed=state.saliency_removed, channels_removed=state.channels_removed,
        accuracy=state.accuracy, feasible=ok, state=index,
    )


def _key(point: PlanPoint, objective: str, base_accuracy: float | None) -> tuple[float, float, float]:
    """Pruning cost first (accuracy lost, floored at 0, then saliency removed), then the objective.

    A pruned model that scores above the unpruned one (fine-tuning noise) is not credited for it:
    it ties on accuracy and then loses on saliency.
    """
    lost = 0.0
    if base_accuracy is not None and point.accuracy is not None:
        lost = max(0.0, base_accuracy - point.accuracy)
    return (round(lost, 12), round(point.saliency_removed, 12), point.value(objective))


def _choose(
    points: list[PlanPoint], states: list[PrunedState], baseline: Baseline, fig: LinkFigures,
    opts: PlanOptions, base_accuracy: float | None,
) -> PlanResult:
    here = [p for p in points if p.rate_bps == fig.rate_bps]
    joint = [p for p in here if p.kind == "joint"]
    local = sorted((p for p in here if p.kind == "prune-only"),
                   key=lambda p: _key(p, opts.objective, base_accuracy))
    key = lambda p: _key(p, opts.objective, base_accuracy)  # noqa: E731
    choose = key
    if not opts.limits():  # no budget: the best objective within max_prune
        choose = lambda p: (p.value(opts.objective), *_key(p, opts.objective, base_accuracy)[:2])  # noqa: E731
    feasible = [p for p in joint if p.feasible]
    if not feasible:
        raise _infeasible(joint, opts, fig)
    best = min(feasible, key=choose)
    prune_only = min((p for p in local if p.feasible), key=choose, default=None)
    split_only = next((p for p in joint if p.state == 0 and p.feasible), None)
    pareto: list[PlanPoint] = []
    for p in sorted(joint, key=key):  # by cost, then objective: keep each strict improvement
        if not pareto or p.value(opts.objective) < pareto[-1].value(opts.objective) * (1 - 1e-12):
            pareto.append(p)
    state = states[best.state]
    before = widths_of(baseline.graph, baseline.model)
    pruned = {m: (before[m], w) for m, w in state.widths.items() if m in before and before[m] != w}
    return PlanResult(best=best, prune_only=prune_only, split_only=split_only, pareto=tuple(pareto),
                      prune_only_curve=tuple(local), points=len(joint), problem=state.problem, link=fig,
                      pruned_layers=pruned)


def _infeasible(joint: list[PlanPoint], opts: PlanOptions, fig: LinkFigures) -> PlanInfeasibleError:
    limits = opts.limits()
    value = {"energy": lambda p: p.energy_j, "deadline": lambda p: p.latency_s}
    for name, limit in limits.items():
        best = min(value[name](p) for p in joint)
        if best > limit * (1 + _REL_TOL):
            return PlanInfeasibleError(name, limit, best, opts.max_prune, fig.rate_bps)
    # each budget is reachable alone but not together: report energy among the plans meeting the deadline
    within = [p for p in joint if p.latency_s <= limits["deadline"] * (1 + _REL_TOL)]
    best = min(p.energy_j for p in within) if within else math.inf
    return PlanInfeasibleError("energy", limits["energy"], best, opts.max_prune, fig.rate_bps)

