"""Trace a PyTorch model into a :class:`LayerGraph`: a networkx DAG of layers with sizes and MACs.

Tracing is torch.fx symbolic tracing followed by shape propagation on ``meta`` tensors, so no real
arithmetic runs and a model built on the meta device (no weight initialisation) traces as well as a
real one. Where fx fails (Python control flow over proxies, as in YOLO's and torchvision's detection
heads) the model is traced with ``torch.export`` at the ATen level instead
(:mod:`splitprune.export_tracing`); :attr:`LayerGraph.tracer` says which. One node per tensor
operation plus the inputs and the output; an edge ``u -> v`` means ``v`` reads what ``u`` produced,
so residual adds and concatenations are real joins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch import nn

from .errors import InputShapeError, SplitpruneError, TraceError
from .export_tracing import build_export_dag, export_trace
from .tracing import build_dag, symbolic_trace
from .zoo import postprocess_of

if TYPE_CHECKING:
    import networkx

__all__ = ["LayerGraph", "cut_bytes_along_order", "trace"]


@dataclass
class LayerGraph:
    """A traced model as a DAG of layers (see ``docs/CONTRACT.md`` for the node attributes).

    The networkx view, :attr:`nx`, is built on first use (importing networkx costs more than tracing
    a ResNet-50); it shares the node attribute dicts with :attr:`nodes`.

    Attributes:
        nodes: Node attributes by node name (unique fx node names).
        preds: Names of the nodes each node reads from, in argument order.
        order: Node names in execution (topological) order.
        inputs: Names of the input nodes.
        output: Name of the output node.
        gm: The traced ``torch.fx.GraphModule`` (shares parameters with the model).
        name: Model name for reports.
        input_shapes: Shapes of the example inputs.
        board: Name of the board profile after :func:`splitprune.annotate`, else None.
        tracer: ``fx`` (torch.fx, module-level nodes) or ``export`` (torch.export, ATen-level nodes).
        postprocess: Data-dependent post-processing that runs after the traced network (a detector's
            decoding and NMS), as one node's attributes (``name``, ``kind`` = ``postprocess``, ``ops``,
            ``mem_bytes``, ``dispatches``; ``energy_j``/``latency_s`` after annotate), else None. It is
            not in :attr:`nodes`: split and prune see the network only; the totals include it.
    """

    nodes: dict[str, dict[str, Any]]
    preds: dict[str, list[str]]
    order: list[str]
    inputs: list[str]
    output: str
    gm: fx.GraphModule
    name: str
    input_shapes: list[tuple[int, ...]]
    board: str | None = field(default=None)
    tracer: str = field(default="fx")
    postprocess: dict[str, Any] | None = field(default=None)

    @cached_property
    def nx(self) -> networkx.DiGraph:
        """The graph as a networkx DiGraph: edge ``u -> v`` when ``v`` reads ``u``'s output."""
        import networkx

        dag = networkx.DiGraph()
        for name in self.order:
            dag.add_node(name)
            dag.nodes[name].update(self.nodes[name])
            self.nodes[name] = dag.nodes[name]  # one attribute dict per node, seen by both views
        dag.add_edges_from((source, name) for name in self.order for source in self.preds[name])
        return dag

    def _sum(self, key: str) -> Any:
        extra = self.postprocess[key] if self.postprocess is not None and key in self.postprocess else 0
        return sum(self.nodes[n][key] for n in self.order) + extra

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates of one forward pass."""
        return int(self._sum("macs"))

    @property
    def total_params(self) -> int:
        """Parameters used by the traced forward pass."""
        return int(self._sum("params"))

    @property
    def total_energy_j(self) -> float:
        """Estimated energy of one forward pass in joules (needs :func:`splitprune.annotate`)."""
        self._require_annotation()
        return float(self._sum("energy_j"))

    @property
    def total_latency_s(self) -> float:
        """Estimated latency of one forward pass in seconds (needs :func:`splitprune.annotate`)."""
        self._require_annotation()
        return float(self._sum("latency_s"))

    def _require_annotation(self) -> None:
        if self.board is None:
            raise SplitpruneError("graph has no energy annotation; call splitprune.annotate first")

    def to_dict(self) -> dict[str, Any]:
        """The ``splitprune estimate --json`` document (schema ``splitprune.estimate/1``)."""
        annotated = self.board is not None
        layers = []
        for name in self.order:
            attrs = self.nodes[name]
            row = {
                "name": name,
                "kind": attrs["kind"],
                "module": attrs["module"],
                "output_shapes": [list(s) for s in attrs["output_shapes"]],
                "macs": attrs["macs"],
                "ops": attrs["ops"],
                "params": attrs["params"],
                "out_bytes": attrs["out_bytes"],
                "mem_bytes": attrs["mem_bytes"],
                "kernels": attrs["kernels"],
                "inputs": list(self.preds[name]),
            }
            if annotated:
                row["energy_j"] = attrs["energy_j"]
                row["latency_s"] = attrs["latency_s"]
                row["kernel"] = attrs.get("kernel")
            layers.append(row)
        return {
            "schema": "splitprune.estimate/1",
            "model": self.name,
            "tracer": self.tracer,
            "board": self.board,
            "input_shape": list(self.input_shapes[0]) if len(self.input_shapes) == 1 else None,
            "input_shapes": [list(s) for s in self.input_shapes],
            "total_macs": self.total_macs,
            "total_params": self.total_params,
            "total_energy_j": self.total_energy_j if annotated else None,
            "total_latency_s": self.total_latency_s if annotated else None,
            "gpu_kernels": len({r["kernel"] for r in layers if r.get("kernel")}) if annotated else None,
            "postprocess": dict(self.postprocess) if self.postprocess is not None else None,
            "layers": layers,
        }


def cut_bytes_along_order(graph: LayerGraph) -> list[int]:
    """Bytes of every tensor that crosses a cut placed after each node of ``graph.order``.

    Entry ``i`` counts the outputs of nodes at positions ``<= i`` that a node after ``i`` reads:
    what a device running the first ``i + 1`` nodes would have to send.
    """
    position = {name: i for i, name in enumerate(graph.order)}
    last_reader: dict[str, int] = {}
    for name in graph.order:
        for source in graph.preds[name]:
            last_reader[source] = max(last_reader.get(source, 0), position[name])
    delta = [0] * (len(graph.order) + 1)
    for name, end in last_reader.items():
        delta[position[name]] += graph.nodes[name]["out_bytes"]
        delta[end] -= graph.nodes[name]["out_bytes"]
    running, result = 0, []
    for i in range(len(graph.order)):
        running += delta[i]
        result.append(running)
    return result


def _postprocess(model: nn.Module, output: dict[str, Any]) -> dict[str, Any] | None:
    record = postprocess_of(model, output["out_bytes"], sum(math.prod(s) for s in output["output_shapes"]))
    if record is None:
        return None
    return {**record.to_dict(), "kind": "postprocess", "macs": 0, "kernels": 0, "output_shapes": []}


def trace(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    name: str | None = None,
    leaf_modules: Iterable[type[nn.Module]] = (),
    tracer: str = "auto",
) -> LayerGraph:
    """Trace ``model`` on ``example_inputs`` (any device, ``meta`` included) into a LayerGraph.

    Args:
        model: The network. It is traced in eval mode; its training flag is restored afterwards.
        example_inputs: One tensor or a sequence of tensors; only shapes and dtypes are used.
        name: Model name for reports (default: the class name).
        leaf_modules: Module classes to keep as single opaque layers (e.g. ones that fx cannot trace).
        tracer: ``auto`` (fx, then torch.export), ``fx`` or ``export``.

    torch.fx is tried first; when it cannot trace the model, ``torch.export`` (non-strict) traces it at
    the ATen level into the same kind of graph (``graph.tracer`` says which; ``tracer`` forces one).

    Raises:
        TraceError: Neither tracer can trace the model; the message names what broke in each.
        InputShapeError: The inputs do not fit the model.
    """
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise InputShapeError("example_inputs must be a tensor or a sequence of tensors")
    if tracer not in ("auto", "fx", "export"):
        raise TraceError(f"unknown tracer {tracer!r}: use auto, fx or export")
    meta_inputs = [torch.empty(t.shape, dtype=t.dtype, device="meta") for t in inputs]
    used = "fx"
    try:
        if tracer == "export":
            raise TraceError("torch.export requested")
        gm = symbolic_trace(model, tuple(leaf_modules))
    except TraceError as fx_error:
        if tracer == "fx":
            raise
        used = "export"
        try:
            gm = export_trace(model, inputs)
        except TraceError as export_error:
            raise TraceError(f"{fx_error} (torch.fx); {export_error}") from None
    dag = build_dag(gm, meta_inputs) if used == "fx" else build_export_dag(gm, meta_inputs)
    return LayerGraph(
        postprocess=_postprocess(model, dag.nodes[dag.output]),
        nodes=dag.nodes,
        preds=dag.preds,
        order=dag.order,
        inputs=dag.inputs,
        output=dag.output,
        gm=gm,
        name=name or type(model).__name__,
        input_shapes=[tuple(t.shape) for t in inputs],
        tracer=used,
    )
