"""Trace a PyTorch model into a :class:`LayerGraph`: a networkx DAG of layers with sizes and MACs.

Tracing is torch.fx symbolic tracing followed by shape propagation on ``meta`` tensors, so no real
arithmetic runs and a model built on the meta device (no weight initialisation) traces as well as a
real one. One node per tensor operation plus the inputs and the output; an edge ``u -> v`` means
``v`` reads what ``u`` produced, so residual adds and concatenations are real joins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch import nn

from .errors import InputShapeError, SplitpruneError
from .tracing import build_dag, symbolic_trace

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
        return sum(self.nodes[n][key] for n in self.order)

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
            "board": self.board,
            "input_shape": list(self.input_shapes[0]) if len(self.input_shapes) == 1 else None,
            "input_shapes": [list(s) for s in self.input_shapes],
            "total_macs": self.total_macs,
            "total_params": self.total_params,
            "total_energy_j": self.total_energy_j if annotated else None,
            "total_latency_s": self.total_latency_s if annotated else None,
            "gpu_kernels": len({r["kernel"] for r in layers if r.get("kernel")}) if annotated else None,
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


def trace(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    name: str | None = None,
    leaf_modules: Iterable[type[nn.Module]] = (),
) -> LayerGraph:
    """Trace ``model`` on ``example_inputs`` (any device, ``meta`` included) into a LayerGraph.

    Args:
        model: The network. It is traced in eval mode; its training flag is restored afterwards.
        example_inputs: One tensor or a sequence of tensors; only shapes and dtypes are used.
        name: Model name for reports (default: the class name).
        leaf_modules: Module classes to keep as single opaque layers (e.g. ones that fx cannot trace).

    Raises:
        TraceError: fx cannot trace the model; the message names the module that broke.
        InputShapeError: The inputs do not fit the model.
    """
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise InputShapeError("example_inputs must be a tensor or a sequence of tensors")
    gm = symbolic_trace(model, tuple(leaf_modules))
    meta_inputs = [torch.empty(t.shape, dtype=t.dtype, device="meta") for t in inputs]
    dag = build_dag(gm, meta_inputs)
    return LayerGraph(
        nodes=dag.nodes,
        preds=dag.preds,
        order=dag.order,
        inputs=dag.inputs,
        output=dag.output,
        gm=gm,
        name=name or type(model).__name__,
        input_shapes=[tuple(t.shape) for t in inputs],
    )
