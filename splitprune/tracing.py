"""fx tracing and meta-tensor shape propagation: a model becomes a networkx DAG of annotated ops.

:func:`symbolic_trace` runs torch.fx (naming the module that broke when it fails) and
:func:`build_dag` walks the traced graph on ``meta`` tensors, asking the :mod:`splitprune.ops` registry
for each op's kind, MACs and kernels. :func:`splitprune.graph.trace` wraps both into a LayerGraph.
"""

from __future__ import annotations

import contextlib
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import InputShapeError, SplitpruneError, TraceError, exception_reason
from .ops import NO_WORK_KINDS, OpCall, OpRule, function_rule, method_rule, module_rule

__all__ = ["Dag", "build_dag", "symbolic_trace"]


@dataclass
class Dag:
    """Traced ops and their data flow, without networkx (the estimate path never imports it).

    Attributes:
        nodes: Attributes of every node by name (see ``docs/CONTRACT.md``).
        preds: Names of the nodes each node reads from.
        order: Node names in execution (topological) order.
        inputs: Names of the input nodes.
        output: Name of the output node.
    """

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    preds: dict[str, list[str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    output: str = "output"


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


def symbolic_trace(model: nn.Module, leaf_types: tuple[type[nn.Module], ...]) -> fx.GraphModule:
    """fx-trace ``model`` in eval mode; raise :class:`TraceError` naming the module that broke."""
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
        reason = exception_reason(exc)
        raise TraceError(
            f"cannot trace {where}: {reason[:160]}; make that code shape-static or pass its class "
            "in leaf_modules to keep it as one opaque layer"
        ) from None
    finally:
        model.train(was_training)
    return _graph_module(tracer.root, fx_graph, type(model).__name__)


def _graph_module(root: nn.Module, graph: fx.Graph, name: str) -> fx.GraphModule:
    """A GraphModule that generates its Python code on first call, not now (a sixth of a trace).

    ``_LazyGraphModule`` is torch's own (it backs ``torch.compile``); where it is missing the
    module compiles at once, as before.
    """
    try:
        from torch.fx._lazy_graph_module import _LazyGraphModule
    except ImportError:  # pragma: no cover - older torch
        return fx.GraphModule(root, graph, name)
    return _LazyGraphModule(root, graph, name)


COMPOSITE_KINDS = frozenset({"attention", "other"})
"""Kinds whose ops may run many ATen ops (counted while tracing); every other op counts as one."""
_NOT_DISPATCHES = frozenset({"_unsafe_view", "scalar_tensor", "detach", "alias", "lift_fresh", "empty_like"})


class _DispatchCounter(TorchDispatchMode):
    """Counts the ATen ops that launch work (not views or metadata) while graph nodes run on meta."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if not func.is_view and func.overloadpacket.__name__ not in _NOT_DISPATCHES:
            self.count += 1
        return func(*args, **(kwargs or {}))


class _MetaRunner:
    """Runs graph nodes on meta tensors, giving leaf modules meta copies of their parameters."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.meta_state: dict[str, dict[str, torch.Tensor]] = {}

    def module(self, target: str, module: nn.Module, args: Any, kwargs: Any) -> Any:
        fast = _FAST_FORWARD.get(type(module))
        if fast is not None and not kwargs and len(args) == 1 and isinstance(args[0], torch.Tensor):
            return fast(module, self.meta_params(target, module), args[0])
        state = self.meta_params(target, module)
        with torch.no_grad():
            return torch.func.functional_call(module, state, tuple(args), kwargs)

    def meta_params(self, target: str, module: nn.Module) -> dict[str, torch.Tensor]:
        """Meta copies of a leaf module's parameters and buffers (made once per module)."""
        state = self.meta_state.get(target)
        if state is None:
            state = {
                key: value
                if value.device.type == "meta"
                else torch.empty_like(value, device="meta", requires_grad=False)
                for key, value in [*module.named_parameters(), *module.named_buffers()]
            }
            self.meta_state[target] = state
        return state

    def attr(self, target: str) -> tuple[Any, bool]:
        """A meta copy of attribute ``target`` and whether it is an ``nn.Parameter``."""
        value: Any = self.gm
        for part in target.split("."):
            value = getattr(value, part)
        is_parameter = isinstance(value, nn.Parameter)
        if isinstance(value, torch.Tensor) and value.device.type != "meta":
            return torch.empty_like(value, device="meta", requires_grad=False), is_parameter
        return value, is_parameter


def _conv_forward(module: Any, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    if module.padding_mode != "zeros":
        return torch.func.functional_call(module, state, (x,))
    return module._conv_forward(x, state["weight"], state.get("bias"))


def _linear_forward(module: Any, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.linear(x, state["weight"], state.get("bias"))


# The commonest leaf modules run straight on their meta weights: functional_call's reparametrisation
# costs more than the meta op itself.
_FAST_FORWARD: dict[type[nn.Module], Any] = {
    nn.Conv1d: _conv_forward,
    nn.Conv2d: _conv_forward,
    nn.Conv3d: _conv_forward,
    nn.Linear: _linear_forward,
}


def meta_like(x: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(x)`` for a meta tensor, without the Python meta kernel where it can.

    The meta ``empty_like`` works out a stride permutation in Python (0.1-0.2 ms a call, a fifth of
    an SSDlite trace); a plain ``torch.empty`` is the same tensor when ``x`` has the contiguous
    strides of its shape, and anything else goes to ``empty_like`` as before.
    """
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.layout == torch.strided and out.stride() == x.stride():
        return out
    return torch.empty_like(x)


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


def build_dag(gm: fx.GraphModule, meta_inputs: list[torch.Tensor]) -> Dag:
    """Run ``gm`` on meta inputs and return its DAG of ops with sizes, MACs and kernels per node."""
    runner = _MetaRunner(gm)
    env: dict[str, Any] = {}
    dag = Dag()
    attr_owner: dict[str, str] = {}  # get_attr node -> first consumer (its weights count there once)
    attr_bytes: dict[str, tuple[int, int]] = {}
    placeholders = iter(meta_inputs)
    modules = dict(gm.named_modules())  # one walk, not a get_submodule per call_module node

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
            dag.inputs.append(node.name)
            _add_node(dag, node, "input", value, params=(0, 0), macs=0, ops=0, in_bytes=0, kernels=0)
            dag.nodes[node.name]["dispatches"] = 0
            continue
        if node.op == "output":
            dag.output = node.name
            value = load(node.args[0])
            env[node.name] = value
            _add_node(dag, node, "output", value, params=(0, 0), macs=0, ops=0, in_bytes=0, kernels=0)
            dag.nodes[node.name]["dispatches"] = 0
            _add_edges(dag, node, attr_owner, attr_bytes)
            continue

        args, kwargs = load(node.args), load(node.kwargs)
        module = None
        if node.op == "call_module":
            module = modules.get(str(node.target)) or gm.get_submodule(str(node.target))
        rule = _rule_for(node, module)
        counter = _DispatchCounter() if rule.kind in COMPOSITE_KINDS else contextlib.nullcontext()
        try:
            with counter:
                value = _run(node, rule, runner, module, args, kwargs)
        except Exception as exc:
            raise _shape_error(node, module, exc) from None
        dispatches = counter.count if isinstance(counter, _DispatchCounter) else 1
        env[node.name] = value
        call = OpCall(module=module, args=tuple(args), kwargs=dict(kwargs), output=value)
        kind = _kind(rule, value, args)
        params = _module_params(module) if module is not None else (0, 0)
        in_bytes = sum(_tensor_bytes(env[a.name]) for a in node.all_input_nodes if a.op != "get_attr")
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
        dag.nodes[node.name]["dispatches"] = 0 if kind in NO_WORK_KINDS else max(1, dispatches)
        _add_edges(dag, node, attr_owner, attr_bytes)

    for attrs in dag.nodes.values():
        if attrs["kind"] in NO_WORK_KINDS:
            attrs["mem_bytes"] = 0
        else:
            attrs["mem_bytes"] = attrs["in_bytes"] + attrs["out_bytes"] + attrs["param_bytes"]
        del attrs["in_bytes"]
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
        return meta_like(args[0])
    if _is_elementwise(node) and not kwargs and len(args) == 2 and isinstance(args[0], torch.Tensor):
        other = args[1]
        if isinstance(other, (torch.Tensor, int, float)) and not isinstance(other, bool):
            # meta kernels work out a stride permutation in Python, a millisecond per call
            x = args[0]
            shape = x.shape
            if isinstance(other, torch.Tensor):
                shape = torch.broadcast_shapes(x.shape, other.shape)
            return torch.empty(shape, dtype=torch.result_type(x, other), device="meta")
    if module is not None:
        return runner.module(str(node.target), module, args, kwargs)
    if node.op == "call_method":
        self_obj, *rest = args
        return getattr(self_obj, str(node.target))(*rest, **kwargs)
    assert callable(node.target)
    return node.target(*args, **kwargs)


_ELEMENTWISE_FUNCTIONS = frozenset(
    {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul}
)
_ELEMENTWISE_METHODS = frozenset({"add", "sub", "mul"})


def _is_elementwise(node: fx.Node) -> bool:
    """Out-of-place add, sub or mul: the output is the broadcast shape of the inputs."""
    if node.op == "call_method":
        return node.target in _ELEMENTWISE_METHODS
    return node.op == "call_function" and node.target in _ELEMENTWISE_FUNCTIONS


def _shape_error(node: fx.Node, module: nn.Module | None, exc: Exception) -> SplitpruneError:
    what = f"'{node.target}' ({type(module).__name__})" if module is not None else f"'{node.name}'"
    reason = exception_reason(exc)
    return InputShapeError(
        f"the input does not fit layer {what}: {reason[:200]}; pass an --input-shape the model accepts"
    )


def _module_params(module: nn.Module) -> tuple[int, int]:
    if module._modules:  # a module with children: torch's walk (it skips shared tensors)
        params, buffers = list(module.parameters()), list(module.buffers())
    else:  # a plain leaf, the common case: its own tensors, each once, without the generators
        params = list({id(p): p for p in module._parameters.values() if p is not None}.values())
        buffers = list({id(b): b for b in module._buffers.values() if b is not None}.values())
    count = sum(p.numel() for p in params)
    size = sum(p.numel() * p.element_size() for p in params)
    size += sum(b.numel() * b.element_size() for b in buffers)
    return count, size


def _kind(rule: OpRule, value: Any, args: Any) -> str:
    if not _is_tensor_value(value):
        return "shape"
    if rule.kind == "linear" and args and isinstance(args[0], torch.Tensor) and args[0].dim() > 2:
        return "matmul"  # a linear over a sequence or a feature map is a GEMM, not a batch-1 FC layer
    return rule.kind


def _add_node(
    dag: Dag,
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
    dag.order.append(node.name)
    dag.preds[node.name] = []
    dag.nodes[node.name] = dict(
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
    dag: Dag,
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
        if source.name not in dag.preds[node.name]:
            dag.preds[node.name].append(source.name)
            attrs["input_shapes"].extend(dag.nodes[source.name]["output_shapes"])
