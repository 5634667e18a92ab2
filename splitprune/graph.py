"""Trace a PyTorch model into a :class:`LayerGraph`: a networkx DAG of layers with sizes and MACs.

Tracing is torch.fx symbolic tracing followed by shape propagation on ``meta`` tensors, so no real
arithmetic runs and a model built on the meta device (no weight initialisation) traces as well as a
real one. One node per tensor operation plus the inputs and the output; an edge ``u -> v`` means
``v`` reads what ``u`` produced, so residual adds and concatenations are real joins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import torch
import torch.fx as fx
from torch import nn

from .errors import InputShapeError, SplitpruneError, TraceError
from .ops import NO_WORK_KINDS, OpCall, OpRule, function_rule, method_rule, module_rule

__all__ = ["LayerGraph", "cut_bytes_along_order", "trace"]

@dataclass
class LayerGraph:
    """A traced model as a DAG of layers (see ``docs/CONTRACT.md`` for the node attributes).

    Attributes:
        nx: The networkx DiGraph; node keys are unique fx node names.
        order: Node names in execution (topological) order.
        inputs: Names of the input nodes.
        output: Name of the output node.
        gm: The traced ``torch.fx.GraphModule`` (shares parameters with the model).
        name: Model name for reports.
        input_shapes: Shapes of the example inputs.
        board: Name of the board profile after :func:`splitprune.annotate`, else None.
    """

    nx: nx.DiGraph
    order: list[str]
    inputs: list[str]
    output: str
    gm: fx.GraphModule
    name: str
    input_shapes: list[tuple[int, ...]]
    board: str | None = field(default=None)

    def _sum(self, key: str) -> Any:
        return sum(self.nx.nodes[n][key] for n in self.order)

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
            attrs = self.nx.nodes[name]
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
                "inputs": list(self.nx.predecessors(name)),
            }
            if annotated:
                row["energy_j"] = attrs["energy_j"]
                row["latency_s"] = attrs["latency_s"]
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
            "layers": layers,
        }


def cut_bytes_along_order(graph: LayerGraph) -> list[int]:
    """Bytes of every tensor that crosses a cut placed after each node of ``graph.order``.

    Entry ``i`` counts the outputs of nodes at positions ``<= i`` that a node after ``i`` reads:
    what a device running the first ``i + 1`` nodes would have to send.
    """
    position = {name: i for i, name in enumerate(graph.order)}
    delta = [0] * (len(graph.order) + 1)
    for name in graph.order:
        consumers = [position[s] for s in graph.nx.successors(name)]
        if consumers:
            start, end = position[name], max(consumers)
            delta[start] += graph.nx.nodes[name]["out_bytes"]
            delta[end] -= graph.nx.nodes[name]["out_bytes"]
    running, result = 0, []
    for i in range(len(graph.order)):
        running += delta[i]
        result.append(running)
    return result


class _Tracer(fx.Tracer):
    """fx tracer that remembers which module it was inside when tracing broke."""

    def __init__(self, leaf_types: tuple[type[nn.Module], ...]) -> None:
        super().__init__()
        self.leaf_types = leaf_types
        self.stack: list[tuple[str, str]] = []

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self.leaf_types and isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        self.stack.append((self.path_of_module(m), type(m).__name__))
        result = super().call_module(m, forward, args, kwargs)
        self.stack.pop()
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
    gm = _symbolic_trace(model, tuple(leaf_modules))
    meta_inputs = [torch.empty(t.shape, dtype=t.dtype, device="meta") for t in inputs]
    graph = _build_graph(gm, meta_inputs)
    return LayerGraph(
        nx=graph,
        order=list(graph.graph["order"]),
        inputs=list(graph.graph["inputs"]),
        output=graph.graph["output"],
        gm=gm,
        name=name or type(model).__name__,
        input_shapes=[tuple(t.shape) for t in inputs],
    )


def _symbolic_trace(model: nn.Module, leaf_types: tuple[type[nn.Module], ...]) -> fx.GraphModule:
    was_training = model.training
    model.eval()
    tracer = _Tracer(leaf_types)
    try:
        fx_graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types; all mean "cannot trace"
        where = (
            f"module '{tracer.stack[-1][0]}' ({tracer.stack[-1][1]})"
            if tracer.stack
            else f"{type(model).__name__}.forward"
        )
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TraceError(
            f"cannot trace {where}: {reason[:160]}; make that code shape-static or pass its class "
            "in leaf_modules to keep it as one opaque layer"
        ) from None
    finally:
        model.train(was_training)
    return fx.GraphModule(tracer.root, fx_graph, type(model).__name__)


class _MetaRunner:
    """Runs graph nodes on meta tensors, giving leaf modules meta copies of their parameters."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.meta_state: dict[str, dict[str, torch.Tensor]] = {}

    def module(self, target: str, module: nn.Module, args: Any, kwargs: Any) -> Any:
        state = self.meta_state.get(target)
        if state is None:
            state = {
                key: value
                if value.device.type == "meta"
                else torch.empty_like(value, device="meta", requires_grad=False)
                for key, value in [*module.named_parameters(), *module.named_buffers()]
            }
            self.meta_state[target] = state
        with torch.no_grad():
            return torch.func.functional_call(module, state, tuple(args), kwargs)

    def attr(self, target: str) -> tuple[Any, bool]:
        """A meta copy of attribute ``target`` and whether it is an ``nn.Parameter``."""
        value: Any = self.gm
        for part in target.split("."):
            value = getattr(value, part)
        is_parameter = isinstance(value, nn.Parameter)
        if isinstance(value, torch.Tensor) and value.device.type != "meta":
            return torch.empty_like(value, device="meta", requires_grad=False), is_parameter
        return value, is_parameter


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _shapes(value: Any) -> list[tuple[int, ...]]:
    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, (tuple, list)):
        return [s for v in value for s in _shapes(v)]
    return []


def _is_tensor_value(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, (tuple, list)) and any(map(_is_tensor_value, value))


def _dtype_name(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(value.dtype).removeprefix("torch.")
    if isinstance(value, (tuple, list)) and value:
        return _dtype_name(value[0])
    return ""


def _build_graph(gm: fx.GraphModule, meta_inputs: list[torch.Tensor]) -> nx.DiGraph:
    runner = _MetaRunner(gm)
    env: dict[str, Any] = {}
    dag = nx.DiGraph()
    order: list[str] = []
    inputs: list[str] = []
    output = "output"
    attr_owner: dict[str, str] = {}  # get_attr node -> first consumer (its weights count there once)
    attr_bytes: dict[str, tuple[int, int]] = {}
    placeholders = iter(meta_inputs)

    def load(arg: Any) -> Any:
        return fx.node.map_arg(arg, lambda n: env[n.name])

    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value, is_parameter = runner.attr(str(node.target))
            env[node.name] = value
            attr_bytes[node.name] = (value.numel() if is_parameter else 0, _tensor_bytes(value))
            continue
        if node.op == "placeholder":
            try:
                value = next(placeholders)
            except StopIteration:
                raise InputShapeError(
                    f"model takes more inputs than given (missing '{node.target}'); "
                    "pass one example tensor per forward() argument"
                ) from None
            env[node.name] = value
            inputs.append(node.name)
            _add_node(dag, node, "input", value, params=(0, 0), macs=0, ops=0, in_bytes=0, kernels=0)
            order.append(node.name)
            continue
        if node.op == "output":
            output = node.name
            value = load(node.args[0])
            env[node.name] = value
            _add_node(dag, node, "output", value, params=(0, 0), macs=0, ops=0, in_bytes=0, kernels=0)
            _add_edges(dag, node, attr_owner, attr_bytes)
            order.append(node.name)
            continue

        args, kwargs = load(node.args), load(node.kwargs)
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        rule = _rule_for(node, module)
        try:
            value = _run(node, rule, runner, module, args, kwargs)
        except Exception as exc:
            raise _shape_error(node, module, exc) from None
        env[node.name] = value
        call = OpCall(module=module, args=tuple(args), kwargs=dict(kwargs), output=value)
        kind = _kind(rule, value, args)
        params = _module_params(module) if module is not None else (0, 0)
        in_bytes = sum(
            _tensor_bytes(env[a.name]) for a in node.all_input_nodes if a.op != "get_attr"
        )
        _add_node(
            dag,
            node,
            kind,
            value,
            params=params,
            macs=int(rule.macs(call)) if kind != "shape" else 0,
            ops=int(rule.ops(call)) if kind != "shape" else 0,
            in_bytes=in_bytes,
            kernels=int(rule.kernels(call)) if kind == "conv" else 0,
        )
        _add_edges(dag, node, attr_owner, attr_bytes)
        order.append(node.name)

    for attrs in dag.nodes.values():
        if attrs["kind"] in NO_WORK_KINDS:
            attrs["mem_bytes"] = 0
        else:
            attrs["mem_bytes"] = attrs["in_bytes"] + attrs["out_bytes"] + attrs["param_bytes"]
        del attrs["in_bytes"]
    dag.graph.update(order=order, inputs=inputs, output=output)
    return dag


def _rule_for(node: fx.Node, module: nn.Module | None) -> OpRule:
    if module is not None:
        return module_rule(module)
    if node.op == "call_method":
        return method_rule(str(node.target))
    return function_rule(node.target)


def _run(
    node: fx.Node, rule: OpRule, runner: _MetaRunner, module: nn.Module | None, args: Any, kwargs: Any
) -> Any:
    if rule.same_shape and args and isinstance(args[0], torch.Tensor):
        return torch.empty_like(args[0])
    if module is not None:
        return runner.module(str(node.target), module, args, kwargs)
    if node.op == "call_method":
        self_obj, *rest = args
        return getattr(self_obj, str(node.target))(*rest, **kwargs)
    assert callable(node.target)
    return node.target(*args, **kwargs)


def _shape_error(node: fx.Node, module: nn.Module | None, exc: Exception) -> SplitpruneError:
    what = f"'{node.target}' ({type(module).__name__})" if module is not None else f"'{node.name}'"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputShapeError(
        f"the input does not fit layer {what}: {reason[:200]}; pass an --input-shape the model accepts"
    )


def _module_params(module: nn.Module) -> tuple[int, int]:
    count = sum(p.numel() for p in module.parameters())
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    size += sum(b.numel() * b.element_size() for b in module.buffers())
    return count, size


def _kind(rule: OpRule, value: Any, args: Any) -> str:
    if not _is_tensor_value(value):
        return "shape"
    if rule.kind == "linear" and args and isinstance(args[0], torch.Tensor) and args[0].dim() > 2:
        return "matmul"  # a linear over a sequence or a feature map is a GEMM, not a batch-1 FC layer
    return rule.kind


def _add_node(
    dag: nx.DiGraph,
    node: fx.Node,
    kind: str,
    value: Any,
    *,
    params: tuple[int, int],
    macs: int,
    ops: int,
    in_bytes: int,
    kernels: int,
) -> None:
    module_path = node.target if node.op == "call_module" else ""
    stack = node.meta.get("nn_module_stack")
    if not module_path and stack:
        module_path = next(reversed(stack.values()))[0] if stack else ""
    dag.add_node(
        node.name,
        kind=kind,
        module=str(module_path),
        target=node.target if isinstance(node.target, str) else getattr(node.target, "__name__", ""),
        input_shapes=[],
        output_shapes=_shapes(value),
        dtype=_dtype_name(value),
        out_bytes=_tensor_bytes(value),
        params=params[0],
        param_bytes=params[1],
        macs=macs,
        ops=ops,
        in_bytes=in_bytes,
        kernels=kernels,
        is_tensor=_is_tensor_value(value),
    )


def _add_edges(
    dag: nx.DiGraph,
    node: fx.Node,
    attr_owner: dict[str, str],
    attr_bytes: dict[str, tuple[int, int]],
) -> None:
    attrs = dag.nodes[node.name]
    for source in node.all_input_nodes:
        if source.op == "get_attr":
            if source.name not in attr_owner:
                attr_owner[source.name] = node.name
                count, size = attr_bytes[source.name]
                attrs["params"] += count
                attrs["param_bytes"] += size
            continue
        dag.add_edge(source.name, node.name)
        attrs["input_shapes"].extend(dag.nodes[source.name]["output_shapes"])
