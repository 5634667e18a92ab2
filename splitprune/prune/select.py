"""Choosing channels: per-group scores and the greedy, budget-aware pick of one step.

Scores come from a torch-pruning importance (the energy-aware one divides saliency by the cost a
channel saves over the whole coupled group, from the :class:`~.channels.ChannelModel`). A group is
pruned in *units*: one channel, or for a group through multi-head attention one slot (the same
position in every head, ``num_heads`` channels) whose score is the mean of its channels' scores. A
step then takes chunks of units, lowest mean score first across all groups, accounting each chunk's
exact saving on the channel model (so chunks of coupled groups interact correctly) and skipping any
chunk that would end the step below the tolerance floor. A chunk keeps the group's width on a
multiple of ``round_to`` channels (``round_to / gcd(round_to, num_heads)`` slots for attention).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from .channels import ChannelModel, ChannelState, Counts
from .groups import GroupSpec, autograd_visible, group_spec
from .importance import EnergyAwareImportance, base_importance

__all__ = ["Group", "Scorer", "changes_for", "chunk_sizes", "select", "unit_chunk"]


@dataclass
class Group:
    """A torch-pruning group with its summary, guard floor and scores.

    Attributes:
        tp_group: The torch-pruning group (full index range).
        spec: Its summary.
        floor: Fewest units the group keeps (channels, or slots for attention groups).
        scores: One score per unit (lowest is pruned first).
    """

    tp_group: Any
    spec: GroupSpec
    floor: int
    scores: torch.Tensor = field(default_factory=lambda: torch.empty(0))

    def channel_indices(self, units: list[int]) -> list[int]:
        """Root channel indices of ``units`` (a slot stands for the same position in every head)."""
        groups = self.spec.channel_groups
        if groups == 1:
            return units
        per_group = self.spec.channels // groups
        return sorted(h * per_group + u for h in range(groups) for u in units)


def unit_chunk(spec: GroupSpec, round_to: int) -> int:
    """Units per chunk that keep ``spec``'s width a multiple of ``round_to`` channels."""
    return round_to // math.gcd(round_to, spec.channel_groups)


def changes_for(cmodel: ChannelModel, state: ChannelState, spec: GroupSpec, n: int) -> Counts:
    """Channel counts of ``spec``'s members after removing ``n`` more of its channels."""
    changes: Counts = {}
    for name, out_per, in_per in spec.members:
        cin, cout = state.counts.get(name) or cmodel.current(name)
        changes[name] = (max(cin - n * in_per, 0), max(cout - n * out_per, 0))
    return changes


def chunk_sizes(channels: int, floor: int, unit: int) -> list[int]:
    """Chunk sizes, in removal order, that keep widths on multiples of ``unit`` and >= ``floor``."""
    sizes, left = [], channels
    lowest = max(floor, 1) if unit == 1 else max(floor, unit)
    if unit > 1 and left % unit:
        if left - left % unit < lowest:
            return []
        sizes.append(left % unit)
        left -= left % unit
    while left - unit >= lowest:
        sizes.append(unit)
        left -= unit
    return sizes


def select(
    groups: list[Group], cmodel: ChannelModel, unit: int, quota: float, lower: float
) -> dict[int, int]:
    """Greedy: lowest mean score first; returns group index -> units to remove.

    ``unit`` is the chunk in channels (``round_to``); a multi-head group's chunk is in slots
    (:func:`unit_chunk`). For groups without attention a unit is a channel.
    """
    state = cmodel.state()
    plans = [chunk_sizes(g.spec.units, g.floor, unit_chunk(g.spec, unit)) for g in groups]
    orders = [torch.argsort(g.scores) for g in groups]
    sorted_scores = [g.scores[o] for g, o in zip(groups, orders, strict=True)]
    heap: list[tuple[float, int, int, int]] = []

    def push(gi: int, k: int, start: int) -> None:
        if k < len(plans[gi]):
            size = plans[gi][k]
            score = float(sorted_scores[gi][start : start + size].mean())
            heapq.heappush(heap, (score, gi, k, start))

    for gi in range(len(groups)):
        push(gi, 0, 0)
    taken: dict[int, int] = {}
    saved = 0.0
    while heap and saved < quota:
        _, gi, k, start = heapq.heappop(heap)
        size = plans[gi][k]
        changes = changes_for(cmodel, state, groups[gi].spec, size * groups[gi].spec.channel_groups)
        diff = cmodel.delta(state, changes)
        if state.total + diff < lower:
            continue  # this chunk would overshoot; the group sits out the rest of the step
        cmodel.delta(state, changes, commit=True)
        saved -= diff
        taken[gi] = taken.get(gi, 0) + size
        push(gi, k + 1, start + size)
    return {gi: n for gi, n in taken.items() if n > 0}


class Scorer:
    """Scores every group's channels with the chosen torch-pruning importance."""

    def __init__(
        self,
        importance: str,
        opts: Any,
        model: nn.Module,
        dg: Any,
        names: dict[nn.Module, str],
        *,
        data: Any,
        loss_fn: Any,
    ) -> None:
        self.opts, self.model, self.data, self.dg, self.names = opts, model, data, dg, names
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        base_name = opts.saliency if importance == "energy" else importance
        self.uses_grad = base_name == "taylor"
        base = base_importance(base_name)
        self.importance: tp.importance.Importance = base
        if importance == "energy":
            self.importance = EnergyAwareImportance(lambda group: 0.0, base)

    def score(self, groups: list[Group], cmodel: ChannelModel, granularity: int) -> None:
        """Write ``scores`` (one per channel) on every group."""
        if self.uses_grad:
            self._gradients()
        if isinstance(self.importance, EnergyAwareImportance):
            state = cmodel.state()

            def saved_per_channel(group: Any) -> float:
                spec = group_spec(group, self.dg, self.names)
                u, step = spec.units, unit_chunk(spec, granularity)
                n = (u - step * ((u - 1) // step)) * spec.channel_groups  # down to the next tile boundary
                return -cmodel.delta(state, changes_for(cmodel, state, spec, n)) / n

            self.importance.set_cost(saved_per_channel)
        for g in groups:
            scores = self.importance(g.tp_group)
            per_channel = torch.ones(g.spec.channels) if scores is None else scores.detach().float().cpu()
            g.scores = per_channel.view(g.spec.channel_groups, -1).mean(0)

    def _gradients(self) -> None:
        with autograd_visible(self.model):
            self.model.zero_grad()
            for i, (x, y) in enumerate(self.data):
                if i >= self.opts.taylor_batches:
                    break
                self.loss_fn(self.model(x), y).backward()
