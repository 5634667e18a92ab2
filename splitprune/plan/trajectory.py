"""Progressive pruning of one candidate's device side, with the link in the importance.

A candidate is a device set ``D`` (a cut of the unpruned model). Only coupled channel groups whose
output layers all lie in ``D`` are pruned: device-side layers, including the layer that produces a
tensor crossing the cut, whose server-side consumers then lose the same input channels (torch-pruning
keeps the two halves consistent). The classifier and the guards of ``prune`` (``min_channels``,
``max_ratio`` against the original width) are respected.

Each step scores every eligible channel with the energy-aware importance of :mod:`splitprune.prune`:
saliency (group magnitude, mean 1 in its group) divided by what removing it saves *for this
candidate*: the board-model cost of the device-side nodes it touches plus, for channels of a tensor
that crosses the cut, its bytes on the wire times the link's energy (or time) per byte. Chunks of
``round_to`` channels are then taken, lowest mean score first, until the step has removed
``step_saliency`` of the model's saliency; the model is pruned, re-traced and annotated, and the new
state (a :class:`~splitprune.split.SplitProblem` of the pruned model) is handed to the caller, which
re-solves the split exactly.

Saliency removed is counted in the unpruned model: every channel keeps the magnitude score it had
before any pruning (mean 1 within its coupled group), and the fraction removed is the sum over
removed channels divided by the number of prunable channels (the sum over all of them).
"""

from __future__ import annotations

import copy
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..board import BoardProfile
from ..energy import annotate
from ..graph import LayerGraph, trace
from ..pricing import MetricPricer
from ..prune.channels import ChannelModel, ChannelState
from ..prune.groups import build_dependency, group_spec, layer_module, layers_within
from ..prune.importance import CachedGroupMagnitude
from ..prune.select import Group, changes_for, chunk_sizes
from ..split.problem import SplitProblem

__all__ = ["Baseline", "PrunedState", "Trajectory", "widths_of"]

History = tuple[tuple[str, bool, tuple[int, ...]], ...]


@dataclass(frozen=True)
class PrunedState:
    """One pruned model along a trajectory.

    Attributes:
        candidate: Name of the candidate cut.
        step: Step index (0: unpruned).
        problem: The pruned model as a split problem (its graph is not kept: it holds the weights).
        widths: Output channels of every conv and linear module.
        saliency_removed: Fraction of the model's saliency removed (see the module docstring).
        channels_removed: Fraction of the prunable channels removed.
        history: torch-pruning's pruning history (replays on a fresh copy of the model).
        accuracy: Accuracy from the evaluate hook, if any.
    """

    candidate: str
    step: int
    problem: SplitProblem
    widths: dict[str, int]
    saliency_removed: float
    channels_removed: float
    history: History
    accuracy: float | None = None


@dataclass(frozen=True)
class Baseline:
    """What every trajectory shares: the unpruned model and its channel saliency.

    Attributes:
        model: The unpruned model (never modified), as :func:`~splitprune.prune.adapters.adapt`
            rewrote it (YOLO's split convs as two convs; the same output).
        inputs: Example inputs.
        graph: Its traced, annotated graph.
        board: The board profile the graphs are annotated with.
        scores: Root module of each prunable group -> its channels' saliency (mean 1).
        floors: Root module -> fewest channels the guards allow.
        total_channels: Prunable channels in the model (the saliency total).
        ignored: Module names never pruned (output layers, the blocks an adapter keeps whole and
            ``ignore``); the conv and linear layers inside them are not pruned either.
    """

    model: nn.Module
    inputs: tuple[torch.Tensor, ...]
    graph: LayerGraph
    board: BoardProfile
    scores: dict[str, torch.Tensor]
    floors: dict[str, int]
    total_channels: int
    ignored: tuple[str, ...]

    @classmethod
    def build(
        cls, model: nn.Module, inputs: tuple[torch.Tensor, ...], graph: LayerGraph, board: BoardProfile,
        *, ignored: tuple[str, ...], min_channels: int, max_ratio: float,
    ) -> Baseline:
        """Score the unpruned model's groups once (on a copy; ``model`` stays untouched)."""
        work = copy.deepcopy(model)
        dg = build_dependency(work, inputs)
        names = {m: n for n, m in work.named_modules()}
        magnitude = CachedGroupMagnitude()
        scores, floors = {}, {}
        for tp_group, spec in _groups(dg, work, names, ignored):
            s = magnitude(tp_group)
            scores[spec.root] = torch.ones(spec.channels) if s is None else s.detach().float().cpu()
            width = {m: _out_channels(work.get_submodule(m)) for m in spec.out_modules}
            floors[spec.root] = max(
                max(min_channels, math.ceil(width[m] * (1 - max_ratio)), 1) for m in spec.out_modules
            )
        total = sum(len(s) for s in scores.values())
        return cls(model, inputs, graph, board, scores, floors, total, ignored)


class Trajectory:
    """Prunes a copy of the model step by step on one candidate's device side.

    Args:
        baseline: The shared unpruned model and scores.
        candidate: Name of the candidate.
        device_nodes: The candidate's device set (node names of the unpruned graph).
        cost: The pricer of the metric the importance saves (energy or latency).
        per_byte: Link cost per byte on the wire in the same unit (J or s per byte).
        start: The unpruned model's split problem (wire bytes of the crossing tensors).
        round_to: Chunk size in channels.
        to_problem: Builds the split problem of a traced, annotated graph.
    """

    def __init__(
        self, baseline: Baseline, candidate: str, device_nodes: frozenset[str], *, cost: MetricPricer,
        per_byte: float, start: SplitProblem, round_to: int,
        to_problem: Callable[[LayerGraph], SplitProblem],
    ) -> None:
        self.to_problem = to_problem
        self.base, self.candidate, self.cost = baseline, candidate, cost
        self.per_byte, self.round_to = per_byte, round_to
        self.model = copy.deepcopy(baseline.model)
        self.dg = build_dependency(self.model, baseline.inputs)
        self.names = {m: n for n, m in self.model.named_modules()}
        graph = baseline.graph
        self.device = [name in device_nodes for name in graph.order]
        self.device_modules = {graph.nx.nodes[n]["module"] for n in device_nodes} - {""}
        self.sent = [
            i for i, name in enumerate(graph.order)
            if self.device[i] and any(s not in device_nodes for s in graph.nx.successors(name))
        ]
        self.wire_bytes = start.wire_bytes
        self.original = {root: list(range(len(s))) for root, s in baseline.scores.items()}
        self.removed = 0.0
        self.channels = 0
        self.magnitude = CachedGroupMagnitude()
        self.step_index = 0
        self.graph = baseline.graph

    def eligible(self) -> list[Group]:
        """Groups whose output layers all run on this candidate's device side."""
        out = []
        for tp_group, spec in _groups(self.dg, self.model, self.names, self.base.ignored):
            if spec.root not in self.base.scores or not set(spec.out_modules) <= self.device_modules:
                continue
            floor = self.base.floors[spec.root]
            if spec.channels > floor:
                out.append(Group(tp_group, spec, floor))
        return out

    def _scores(self, groups: list[Group], graph: LayerGraph) -> None:
        cmodel = ChannelModel(graph, self.model, self.cost)
        state = cmodel.state()
        gran = self.cost.conv_kernel_granularity
        for g in groups:
            c = g.spec.channels
            n = c - gran * ((c - 1) // gran)  # down to the next tile boundary, as prune does
            saved = -self._saving(cmodel, state, changes_for(cmodel, state, g.spec, n)) / n
            s = self.magnitude(g.tp_group)
            saliency = torch.ones(c) if s is None else s.detach().float().cpu()
            g.scores = saliency / max(saved, 1e-15)

    def _saving(self, cmodel: ChannelModel, state: ChannelState, changes: Any) -> float:
        """Change of device-side cost plus radio cost of the cut tensors (negative: a saving)."""
        trial = ChannelState(dict(state.counts), list(state.frac), list(state.cost), state.total)
        cmodel.delta(trial, changes, commit=True)
        diff = sum(trial.cost[i] - state.cost[i] for i in range(len(self.device)) if self.device[i])
        for i in self.sent:
            diff += (trial.frac[i] - state.frac[i]) * float(self.wire_bytes[i]) * self.per_byte
        return diff

    def step(self, quota: float, room: float) -> bool:
        """Remove about ``quota`` of the saliency (never more than ``room``); False if nothing left."""
        groups = self.eligible()
        if not groups:
            return False
        self._scores(groups, self.graph)
        plans = [chunk_sizes(g.spec.channels, g.floor, self.round_to) for g in groups]
        orders = [torch.argsort(g.scores) for g in groups]
        heap: list[tuple[float, int, int, int]] = []

        def push(gi: int, k: int, start: int) -> None:
            if k < len(plans[gi]):
                chunk = orders[gi][start : start + plans[gi][k]]
                heapq.heappush(heap, (float(groups[gi].scores[chunk].mean()), gi, k, start))

        for gi in range(len(groups)):
            push(gi, 0, 0)
        taken: dict[int, int] = {}
        removed = 0.0
        while heap and removed < quota:
            _, gi, k, start = heapq.heappop(heap)
            size = plans[gi][k]
            chunk = orders[gi][start : start + size].tolist()
            root = groups[gi].spec.root
            value = float(self.base.scores[root][[self.original[root][i] for i in chunk]].sum())
            fraction = value / self.base.total_channels
            if removed + fraction > room:
                continue  # over --max-prune: this group sits out
            removed += fraction
            taken[gi] = taken.get(gi, 0) + size
            push(gi, k + 1, start + size)
        if not taken:
            return False
        for gi, n in taken.items():
            group = groups[gi]
            idxs = orders[gi][:n].tolist()
            root_dep = group.tp_group[0].dep
            self.dg.get_pruning_group(root_dep.target.module, root_dep.handler, idxs).prune()
            keep = sorted(set(range(group.spec.channels)) - set(idxs))
            mapping = self.original[group.spec.root]
            self.original[group.spec.root] = [mapping[i] for i in keep]
            self.channels += n
        self.removed += removed
        self.step_index += 1
        return True

    def state(self, accuracy: Callable[[nn.Module], float | None] | None = None) -> PrunedState:
        """Trace and annotate the model as it is now."""
        graph = annotate(trace(self.model, self.base.inputs, name=self.base.graph.name), self.base.board)
        self.graph = graph
        problem = self.to_problem(graph)
        self.wire_bytes = problem.wire_bytes
        history = tuple(
            (str(m), bool(o), tuple(int(i) for i in idx)) for m, o, idx in self.dg.pruning_history()
        )
        return PrunedState(
            candidate=self.candidate, step=self.step_index, problem=problem,
            widths=widths_of(graph, self.model),
            saliency_removed=self.removed, channels_removed=self.channels / self.base.total_channels,
            history=history, accuracy=None if accuracy is None else accuracy(self.model),
        )


def widths_of(graph: LayerGraph, model: nn.Module | None = None) -> dict[str, int]:
    """Output channels of every conv and linear module called in ``graph``.

    ``model`` is the traced model: ATen graphs (torch.export) hold no layer modules in ``graph.gm``,
    so their layers are found in it, as ``prune`` finds them (:func:`~splitprune.prune.groups.layer_module`).
    """
    owner = model if model is not None else graph.gm
    out = {}
    for name in graph.order:
        attrs = graph.nx.nodes[name]
        if attrs["kind"] in ("conv", "linear") and layer_module(attrs, owner) is not None:
            shape = attrs["output_shapes"][0]
            out[attrs["module"]] = int(shape[1] if attrs["kind"] == "conv" else shape[-1])
    return out


def _groups(dg: Any, model: nn.Module, names: dict[nn.Module, str], ignored: tuple[str, ...]) -> list:
    roots = [nn.modules.conv._ConvNd, nn.Linear]
    out = []
    ignored_layers = layers_within(model, list(ignored))
    for tp_group in dg.get_all_groups(ignored_layers=ignored_layers, root_module_types=roots):
        spec = group_spec(tp_group, dg, names)
        if spec.prunable and spec.out_modules:
            out.append((tp_group, spec))
    return out


def _out_channels(module: nn.Module) -> int:
    if isinstance(module, nn.modules.conv._ConvNd):
        return int(module.out_channels)
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    return 0
