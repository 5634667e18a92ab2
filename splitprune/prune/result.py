"""What pruning returns: the pruned model with a before/after report per layer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from ..board import CONV_KINDS, BoardProfile
from ..graph import LayerGraph

__all__ = ["LayerRow", "PruneResult", "layer_rows", "padding_waste_j"]


@dataclass(frozen=True)
class LayerRow:
    """One traced layer before and after pruning.

    Attributes:
        name: Node name in the traced graph.
        kind: Layer kind (conv, linear, bn, act, ...).
        module: Dotted module path ('' for functional ops).
        channels_before: Output channels before pruning (dimension 1 of the output; the last
            dimension for linear, matmul and attention layers, which work on token sequences).
        channels_after: Output channels after pruning.
        macs_before: Multiply-accumulates per inference before pruning.
        macs_after: Multiply-accumulates after pruning.
        energy_before_j: Estimated energy per inference before pruning, joules.
        energy_after_j: Estimated energy per inference after pruning, joules.
        padding_before_j: Energy a conv spends on idle kernel slots of its last tile, before.
        padding_after_j: The same after pruning (0 when the width is a multiple of the tile).
    """

    name: str
    kind: str
    module: str
    channels_before: int
    channels_after: int
    macs_before: int
    macs_after: int
    energy_before_j: float
    energy_after_j: float
    padding_before_j: float
    padding_after_j: float


@dataclass(frozen=True)
class PruneResult:
    """Outcome of :func:`splitprune.prune.prune_to_budget`.

    Attributes:
        model: The pruned network (the object passed in, pruned in place).
        model_name: Name used in reports.
        board: Board profile name.
        importance: ``energy``, ``magnitude``, ``taylor`` or ``random``.
        metric: ``energy_j`` or ``latency_s``: what the budget constrains.
        budget: The budget in the metric's unit (J or s).
        energy_before_j: Estimated energy per inference of the unpruned model, joules.
        energy_after_j: Estimated energy per inference of the pruned model (traced), joules.
        latency_before_s: Estimated latency per inference before, seconds.
        latency_after_s: Estimated latency per inference after, seconds.
        macs_before: MACs per inference before.
        macs_after: MACs per inference after.
        params_before: Parameter count before.
        params_after: Parameter count after.
        channels_before: Sum of conv/linear output channels before.
        channels_after: Sum of conv/linear output channels after.
        padding_before_j: Energy spent on idle kernel slots (widths not a multiple of the tile).
        padding_after_j: The same after pruning.
        round_to: Channel multiple the pruner kept (1 = any width).
        kernel_granularity: The board's conv tile size in kernels.
        steps: Pruning steps taken (one re-trace each).
        trajectory: The metric after each step, starting with the baseline (J or s).
        within_tolerance: The final estimate is within ``[1 - tolerance, 1] x budget``.
        ignored_layers: Modules whose output channels were left alone.
        pruning_history: torch-pruning's history ``[module, is_out_channels, indices]`` (JSON-able).
        elapsed_s: Wall time of the pruning loop, seconds.
        layers: Per-layer rows.
        notes: Warnings for people (e.g. a final step that had to leave the tile grid).
        rewritten: Modules replaced by prunable equivalents before pruning (:mod:`.adapters`); a
            reload applies the same rewrites before replaying the history.
    """

    model: nn.Module = field(repr=False, compare=False)
    model_name: str
    board: str
    importance: str
    metric: str
    budget: float
    energy_before_j: float
    energy_after_j: float
    latency_before_s: float
    latency_after_s: float
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    channels_before: int
    channels_after: int
    padding_before_j: float
    padding_after_j: float
    round_to: int
    kernel_granularity: int
    steps: int
    trajectory: tuple[float, ...]
    within_tolerance: bool
    ignored_layers: tuple[str, ...]
    pruning_history: tuple[tuple[str, bool, tuple[int, ...]], ...] = field(repr=False)
    elapsed_s: float
    layers: tuple[LayerRow, ...] = field(repr=False)
    notes: tuple[str, ...] = ()
    rewritten: tuple[str, ...] = ()

    @property
    def after(self) -> float:
        """The pruned model's estimate in the budget's metric."""
        return self.energy_after_j if self.metric == "energy_j" else self.latency_after_s

    @property
    def budget_error(self) -> float:
        """``after / budget - 1``: 0 is exact, negative is under budget."""
        return self.after / self.budget - 1.0

    def to_dict(self, *, output: str | None = None) -> dict[str, Any]:
        """The ``splitprune prune --json`` document (schema ``splitprune.prune/2``).

        ``metric`` is ``energy`` or ``latency``, as ``split``'s ``objective`` and ``validate``'s ``metric``.
        """
        return {
            "schema": "splitprune.prune/2",
            "model": self.model_name,
            "board": self.board,
            "importance": self.importance,
            "metric": "energy" if self.metric == "energy_j" else "latency",
            "budget_j": self.budget if self.metric == "energy_j" else None,
            "budget_s": self.budget if self.metric == "latency_s" else None,
            "budget_error": self.budget_error,
            "within_tolerance": self.within_tolerance,
            "energy_before_j": self.energy_before_j,
            "energy_after_j": self.energy_after_j,
            "latency_before_s": self.latency_before_s,
            "latency_after_s": self.latency_after_s,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "channels_before": self.channels_before,
            "channels_after": self.channels_after,
            "padding_before_j": self.padding_before_j,
            "padding_after_j": self.padding_after_j,
            "round_to": self.round_to,
            "kernel_granularity": self.kernel_granularity,
            "steps": self.steps,
            "trajectory": list(self.trajectory),
            "ignored_layers": list(self.ignored_layers),
            "elapsed_s": self.elapsed_s,
            "notes": list(self.notes),
            "output": output,
            "layers": [asdict(row) for row in self.layers],
        }


def padding_waste_j(profile: BoardProfile, kind: str, macs: int, kernels: int) -> float:
    """Energy a layer spends on idle kernel slots of its last tile (0 unless it is a conv)."""
    if kind not in CONV_KINDS or kernels <= 0:
        return 0.0
    cost = profile.energy_j
    return cost.conv_per_mac * macs * (cost.padded_kernel_factor(kernels) - 1.0)


def layer_rows(before: LayerGraph, after: LayerGraph, profile: BoardProfile) -> tuple[LayerRow, ...]:
    """Join two annotated traces of the same architecture by node name (layers that cost energy)."""
    rows = []
    for name in before.order:
        b = before.nx.nodes[name]
        if b["energy_j"] <= 0 or name not in after.nx:
            continue
        a = after.nx.nodes[name]
        rows.append(
            LayerRow(
                name=name,
                kind=b["kind"],
                module=b["module"],
                channels_before=_channels(b),
                channels_after=_channels(a),
                macs_before=int(b["macs"]),
                macs_after=int(a["macs"]),
                energy_before_j=float(b["energy_j"]),
                energy_after_j=float(a["energy_j"]),
                padding_before_j=padding_waste_j(profile, b["kind"], b["macs"], b["kernels"]),
                padding_after_j=padding_waste_j(profile, a["kind"], a["macs"], a["kernels"]),
            )
        )
    return tuple(rows)


def _channels(attrs: dict[str, Any]) -> int:
    shapes = attrs["output_shapes"]
    if not shapes or len(shapes[0]) < 2:
        return 0
    axis = -1 if attrs["kind"] in ("linear", "matmul", "attention") else 1
    return int(shapes[0][axis])
