"""Analytic cost of a traced model as a function of its conv and linear channel counts.

Re-tracing after every candidate removal would cost a trace per channel, so the pruner scores and
accounts candidates on this model instead and re-traces once per step to confirm (the traced,
annotated graph stays the number that is reported and checked against the budget).

Every node of the traced graph keeps its traced sizes. A conv or linear node (``linear`` on vectors,
``matmul`` on token sequences) scales its MACs with its module's current input and output channels,
its kernel count with its output channels, and its bytes term by term: input activations with the
input channels, outputs and bias with the output channels, weights with both. A multi-head
attention node (kind ``attention``, embedding width ``e``) splits its MACs into the projections
(``~e^2``) and the score/value products (``~e``), and its bytes into weights (``~e^2``) and
activations and biases (``~e``). Every other node (norms, activations, adds, permutes, concatenation
along tokens) scales its MACs and bytes with the channel fraction it receives from its first input; a
concatenation weighs its inputs by their channel counts. The cost is :func:`splitprune.pricing.price`'s
for one op (:class:`~splitprune.pricing.MetricPricer`), so at the traced channel counts the model
gives exactly what :func:`splitprune.annotate` gives, and under any cost formula in MACs, bytes and
kernels the changes track a re-trace. Under TensorRT the kernels of the traced graph stay fused
(:mod:`splitprune.fusion`): a fused member costs nothing, and the anchor pays for the kernel with the
bytes it moves outside the kernel scaled as its own bytes scale; the enqueue is charged on the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ..board import BoardProfile, GemmShape, gemm_shape
from ..graph import LayerGraph
from ..pricing import MetricPricer
from .swin import is_window_attention

__all__ = ["ChannelModel", "ChannelState", "Counts"]

Counts = dict[str, tuple[int, int]]
"""Module name -> (input channels, output channels) that differ from the module's current ones."""


class _Fractions(Protocol):
    def __getitem__(self, i: int, /) -> float: ...


@dataclass(frozen=True)
class _Node:
    kind: str
    macs: float
    mem_bytes: float
    kernels: int
    preds: tuple[int, ...]
    pred_channels: tuple[int, ...]  # channel count each input had when traced (for concatenation)
    module: str  # name of the conv/linear/attention module this node calls, else ""
    base_in: int = 0  # per-group input channels (conv) or in_features (linear) when traced
    base_out: int = 0
    depthwise: bool = False
    base_in_total: int = 0  # all input channels when traced (input activations scale with it)
    in_bytes: float = 0.0  # activations read when traced
    out_bytes: float = 0.0  # activations written when traced
    weight_bytes: float = 0.0  # weights (scale with input and output channels)
    bias_bytes: float = 0.0  # biases (scale with output channels)
    quadratic_macs: float = 0.0  # attention: projection MACs (scale with the width squared)
    fixed_bytes: float = 0.0  # attention: inputs that follow the heads, not the channels (Swin's bias)
    attention: bool = False  # the width is the module's input width; MACs and weights scale with its square
    dispatches: int = 1  # ATen ops the node runs (the board's launch floor of kinds it has not measured)
    shape: GemmShape | None = None  # GEMM (batches, rows, cols) when traced; cols follow the output channels
    priced: bool = True  # False: a fused TensorRT member or a kind no engine launches (costs nothing)
    kernel_bytes: float | None = None  # TensorRT anchor: bytes its kernel moves when traced
    fixed_cost: float = 0.0  # the per-inference cost, on the first input


@dataclass
class ChannelState:
    """Channel counts under a set of hypothetical removals, with per-node fractions and costs.

    Attributes:
        counts: Modules whose channel counts differ from the live model's.
        frac: Fraction of its traced channels each node outputs.
        cost: Cost of each node (J or s, the cost model's unit).
    """

    counts: Counts
    frac: list[float]
    cost: list[float]
    total: float = field(default=0.0)


class ChannelModel:
    """Cost of ``graph`` under changed channel counts (see the module docstring).

    Args:
        graph: The model traced at its current channel counts.
        model: The traced model; conv and linear modules are read for their channel counts.
        cost: The metric's pricer, or a deployment (or board profile) priced for ``metric``.
        metric: ``energy_j`` or ``latency_s`` when ``cost`` is not a pricer.
    """

    def __init__(
        self, graph: LayerGraph, model: nn.Module, cost: MetricPricer | BoardProfile | Any,
        *, metric: str = "energy_j",
    ) -> None:
        pricer = cost if isinstance(cost, MetricPricer) else MetricPricer.of(cost, metric)
        self.cost_model = pricer
        self.model = model
        kernels_of: dict[str, float] = {}
        members: set[str] = set()
        if pricer.fused:
            from ..fusion import fuse

            for anchor, fused in fuse(graph).items():
                kernels_of[anchor] = float(fused.mem_bytes)
                members.update(fused.members[1:])
        first_input = graph.inputs[0] if graph.inputs else None
        self.modules: dict[str, nn.Module] = {}
        index = {name: i for i, name in enumerate(graph.order)}
        nodes: list[_Node] = []
        users: dict[str, list[int]] = {}
        for i, name in enumerate(graph.order):
            attrs = graph.nx.nodes[name]
            preds = tuple(index[p] for p in graph.nx.predecessors(name))
            pred_channels = tuple(
                _channels(graph.nx.nodes[p]["output_shapes"]) for p in graph.nx.predecessors(name)
            )
            module_name, base_in, base_out, depthwise, base_in_total = "", 0, 0, False, 0
            extra: dict[str, Any] = {}
            if attrs["module"] and attrs["target"] == attrs["module"]:
                module = model.get_submodule(attrs["module"])
                if isinstance(module, nn.modules.conv._ConvNd):
                    module_name = attrs["module"]
                    depthwise = module.groups == module.in_channels and module.groups > 1
                    base_in = module.in_channels // module.groups
                    base_in_total = module.in_channels
                    base_out = module.out_channels
                elif isinstance(module, nn.Linear):
                    module_name = attrs["module"]
                    base_in = base_in_total = module.in_features
                    base_out = module.out_features
                elif isinstance(module, nn.MultiheadAttention):
                    module_name = attrs["module"]
                    base_in = base_in_total = base_out = module.embed_dim
                    extra["quadratic_macs"] = float(attrs["macs"]) - _attention_score_macs(attrs, module)
                    extra["attention"] = True
                if module_name:
                    self.modules[module_name] = module
                    users.setdefault(module_name, []).append(i)
                    extra.update(_byte_split(attrs, module))
            elif attrs["kind"] == "attention" and attrs["module"]:
                owner: Any = model.get_submodule(attrs["module"])
                if is_window_attention(owner):  # torchvision Swin: a function call on the module's weights
                    module_name = f"{attrs['module']}.qkv"
                    base_in = base_in_total = base_out = int(owner.qkv.in_features)
                    self.modules[module_name] = owner.qkv
                    users.setdefault(module_name, []).append(i)
                    extra["quadratic_macs"] = _window_projection_macs(attrs, owner)
                    extra["attention"] = True
                    extra.update(_byte_split(attrs, owner))
            nodes.append(
                _Node(
                    kind=attrs["kind"],
                    macs=float(attrs["macs"]),
                    mem_bytes=float(attrs["mem_bytes"]),
                    kernels=int(attrs["kernels"]),
                    preds=preds,
                    pred_channels=pred_channels,
                    module=module_name,
                    base_in=base_in,
                    base_out=base_out,
                    depthwise=depthwise,
                    base_in_total=base_in_total,
                    dispatches=int(attrs.get("dispatches", 1)),
                    shape=gemm_shape(attrs["kind"], attrs["output_shapes"]),
                    priced=not pricer.fused or name in kernels_of,
                    kernel_bytes=kernels_of.get(name),
                    fixed_cost=pricer.per_inference if name == first_input else 0.0,
                    **extra,
                )
            )
        self.nodes = nodes
        self.users = users
        self._succ = [[index[s] for s in graph.nx.successors(name)] for name in graph.order]
        self._affected_cache: dict[frozenset[str], list[int]] = {}

    # -- channel counts ------------------------------------------------------------------------
    def current(self, module_name: str) -> tuple[int, int]:
        """Live (input channels, output channels) of a conv, linear or multi-head attention module."""
        module = self.modules.get(module_name)
        if module is None:  # a member no traced node calls (Swin's proj: its weight feeds a function)
            module = self.modules[module_name] = self.model.get_submodule(module_name)
        if isinstance(module, nn.Linear):
            return module.in_features, module.out_features
        if isinstance(module, nn.MultiheadAttention):
            return module.embed_dim, module.embed_dim
        assert isinstance(module, nn.modules.conv._ConvNd)
        return module.in_channels, module.out_channels

    def _price(
        self, node: _Node, *, macs: int, mem_bytes: int, kernels: int, dispatches: int,
        shape: GemmShape | None,
    ) -> float:
        """The node's cost at these sizes: its own op, or its TensorRT kernel, or nothing."""
        if not node.priced:
            return node.fixed_cost
        if node.kernel_bytes is not None:  # a fused anchor: the kernel's bytes scale as its own do
            ratio = mem_bytes / node.mem_bytes if node.mem_bytes > 0 else 1.0
            mem_bytes = round(node.kernel_bytes * ratio)
        return node.fixed_cost + self.cost_model(
            node.kind, macs=macs, mem_bytes=mem_bytes, kernels=kernels, dispatches=dispatches, shape=shape
        )

    def _node_cost(
        self, node: _Node, frac: _Fractions, counts: Mapping[str, tuple[int, int]]
    ) -> tuple[float, float]:
        """Return (output channel fraction, cost) of one node."""
        if node.module:
            cin, cout = counts.get(node.module) or self.current(node.module)
            out_frac = cout / node.base_out if node.base_out else 1.0
            act_in_frac = cin / node.base_in_total if node.base_in_total else 1.0
            module = self.modules[node.module]
            if node.attention:
                width = cin / node.base_in
                macs = node.quadratic_macs * width * width + (node.macs - node.quadratic_macs) * width
                scaled = node.mem_bytes - node.weight_bytes - node.fixed_bytes
                mem = node.weight_bytes * width * width + node.fixed_bytes + scaled * width
                cost = self._price(
                    node, macs=round(macs), mem_bytes=round(mem), kernels=0, dispatches=node.dispatches,
                    shape=_scaled(node.shape, width),
                )
                return width, cost
            if isinstance(module, nn.Linear):
                in_frac = act_in_frac
            elif node.depthwise:
                in_frac = 1.0
            else:
                groups = int(getattr(module, "groups", 1))
                in_frac = (cin / groups) / node.base_in if node.base_in else 1.0
            macs = node.macs * in_frac * out_frac
            # Kernels per group (what the board's tile model sees): a depthwise conv keeps one per
            # group however many channels it has; a dense or grouped conv scales with its width.
            if node.kind != "conv":
                kernels = 0
            elif node.depthwise:
                kernels = node.kernels
            else:
                kernels = round(cout * node.kernels / node.base_out) if node.base_out else cout
            mem = (
                node.in_bytes * act_in_frac
                + (node.out_bytes + node.bias_bytes) * out_frac
                + node.weight_bytes * in_frac * out_frac
            )
            cost = self._price(
                node,
                macs=round(macs),
                mem_bytes=round(mem),
                kernels=kernels,
                dispatches=node.dispatches,
                shape=_scaled(node.shape, out_frac),
            )
            return out_frac, cost
        if not node.preds:
            out_frac = 1.0
        elif node.kind == "cat" and sum(node.pred_channels) > 0:
            out_frac = sum(frac[p] * c for p, c in zip(node.preds, node.pred_channels, strict=True)) / sum(
                node.pred_channels
            )
        else:
            out_frac = frac[node.preds[0]]
        cost = self._price(
            node,
            macs=round(node.macs * out_frac),
            mem_bytes=round(node.mem_bytes * out_frac),
            kernels=node.kernels,
            dispatches=node.dispatches,
            shape=node.shape,
        )
        return out_frac, cost

    def state(self, counts: Counts | None = None) -> ChannelState:
        """Evaluate every node under ``counts`` (default: the live model)."""
        counts = dict(counts or {})
        frac = [1.0] * len(self.nodes)
        cost = [0.0] * len(self.nodes)
        for i, node in enumerate(self.nodes):
            frac[i], cost[i] = self._node_cost(node, frac, counts)
        return ChannelState(counts=counts, frac=frac, cost=cost, total=sum(cost))

    def affected(self, module_names: Iterable[str]) -> list[int]:
        """Nodes whose cost can change when the channels of ``module_names`` change, in order."""
        key = frozenset(module_names)
        cached = self._affected_cache.get(key)
        if cached is not None:
            return cached
        starts = {i for name in key for i in self.users.get(name, [])}
        seen: set[int] = set()
        stack = list(starts)
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            for s in self._succ[i]:
                if not self.nodes[s].module or s in starts:
                    stack.append(s)  # the channel fraction flows on through it
                else:
                    seen.add(s)  # a conv/linear whose inputs shrink; its output fraction does not
        result = sorted(seen)
        self._affected_cache[key] = result
        return result

    def delta(self, state: ChannelState, changes: Counts, *, commit: bool = False) -> float:
        """Cost change when ``changes`` are applied on top of ``state`` (negative = saving).

        With ``commit`` the changes are written into ``state``.
        """
        counts = {**state.counts, **changes}
        touched = self.affected(changes)
        new_frac: dict[int, float] = {}
        diff = 0.0
        for i in touched:
            f, c = self._node_cost(self.nodes[i], _Overlay(state.frac, new_frac), counts)
            new_frac[i] = f
            diff += c - state.cost[i]
            if commit:
                state.cost[i] = c
        if commit:
            for i, f in new_frac.items():
                state.frac[i] = f
            state.counts = counts
            state.total += diff
        return diff


class _Overlay:
    """Read-through view of a fraction list with some entries replaced."""

    def __init__(self, base: list[float], new: dict[int, float]) -> None:
        self.base, self.new = base, new

    def __getitem__(self, i: int) -> float:
        return self.new.get(i, self.base[i])


def _attention_score_macs(attrs: dict[str, Any], mha: nn.MultiheadAttention) -> float:
    """MACs of a multi-head attention's score and value products (linear in its width)."""
    shapes = attrs["input_shapes"]
    if not shapes:
        return 0.0
    query = shapes[0]
    key = shapes[1] if len(shapes) > 1 else query
    if len(query) == 2:
        batch, q_len, k_len = 1, query[0], key[0]
    elif mha.batch_first:
        batch, q_len, k_len = query[0], query[1], key[1]
    else:
        batch, q_len, k_len = query[1], query[0], key[0]
    return float(2 * batch * q_len * k_len * mha.embed_dim)


def _window_projection_macs(attrs: dict[str, Any], owner: Any) -> float:
    """MACs of a Swin window attention's qkv and output projections (``4 C^2`` per padded token)."""
    shapes = attrs["input_shapes"]
    if not shapes or len(shapes[0]) != 4:
        return 0.0
    batch, height, width, channels = shapes[0]
    window = owner.window_size
    tokens = batch * math.ceil(height / window[0]) * window[0] * math.ceil(width / window[1]) * window[1]
    return float(4 * tokens * channels * channels)


def _byte_split(attrs: dict[str, Any], module: nn.Module) -> dict[str, float]:
    """Split a module node's traced bytes into activations in/out, weights and biases."""
    mem, out_bytes, param_bytes = (
        float(attrs["mem_bytes"]),
        float(attrs["out_bytes"]),
        float(attrs["param_bytes"]),
    )
    if mem <= 0:
        return {}
    bias_bytes = 0.0
    for owner in module.modules():  # the module's own biases and its projections' (attention)
        for name in ("bias", "in_proj_bias"):
            bias = getattr(owner, name, None)
            if isinstance(bias, torch.Tensor) and not isinstance(owner, nn.modules.batchnorm._NormBase):
                bias_bytes += bias.numel() * bias.element_size()
    bias_bytes = min(bias_bytes, param_bytes)
    # Swin's windowed attention reads its relative position bias, heads x N x N for N positions per
    # window: it follows the heads, not the channels, so pruning head dimensions keeps it
    fixed = 0.0
    table: Any = getattr(module, "relative_position_bias_table", None)
    if isinstance(table, torch.Tensor):
        window: Any = getattr(module, "window_size", ())
        positions = math.prod(int(w) for w in window)
        fixed = float(int(getattr(module, "num_heads", 1)) * positions * positions * table.element_size())
    fixed = min(fixed, max(mem - out_bytes - param_bytes, 0.0))
    return {
        "in_bytes": max(mem - out_bytes - param_bytes, 0.0) - fixed,
        "out_bytes": out_bytes,
        "weight_bytes": param_bytes - bias_bytes,
        "bias_bytes": bias_bytes,
        "fixed_bytes": fixed,
    }


def _channels(shapes: list[tuple[int, ...]]) -> int:
    if shapes and len(shapes[0]) >= 2:
        return int(shapes[0][1])
    return 0


def _scaled(shape: GemmShape | None, cols_frac: float) -> GemmShape | None:
    """``shape`` with its columns (output channels) scaled by ``cols_frac``."""
    if shape is None:
        return None
    batches, rows, cols = shape
    return batches, rows, max(1, round(cols * cols_frac))
