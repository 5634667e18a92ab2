"""The fast fallback tracer: record the ATen ops one meta-tensor forward pass dispatches.

fx cannot trace Python control flow over traced values (YOLO's ``Detect`` head); ``torch.export``
can, but costs seconds (fake tensors, guards, functionalisation). Most such models only branch on
shapes, which a real forward pass on ``meta`` tensors knows: :func:`record_trace` runs the model
once under a ``TorchDispatchMode`` that appends every ATen op to an fx graph (parameters and buffers
as ``get_attr`` nodes, the module path in ``nn_module_stack``, the meta output in ``meta["val"]``),
the graph :func:`splitprune.export_tracing.build_export_dag` prices. The result is a runnable
GraphModule whose node names are the graph's. Data-dependent ops (``nonzero``, ``.item()`` of a meta
tensor) raise :class:`TraceError`, and :func:`splitprune.graph.trace` falls back to ``torch.export``.
"""

from __future__ import annotations

import operator
import warnings
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import TraceError, exception_reason
from .export_tracing import _plain_attributes, _restore
from .ops import ATEN_RULES
from .tracing import _graph_module, meta_like

__all__ = ["record_trace"]

_META = torch.device("meta")


class _Recorder(TorchDispatchMode):
    """Appends each dispatched ATen op to ``graph``; runs it on meta (CPU for all-CPU scalars)."""

    def __init__(self, model: nn.Module, graph: fx.Graph, device: torch.device) -> None:
        super().__init__()
        self.root = model
        self.graph = graph
        self.device = device  # where the recorded program will run (the model's parameters)
        self.nodes: dict[int, fx.Node] = {}  # id(tensor) -> the node that produced it
        self.alive: list[Any] = []  # keeps recorded tensors alive so their ids stay unique
        self.names = {id(t): name for name, t in [*model.named_parameters(), *model.named_buffers()]}
        self.meta_copies: dict[int, torch.Tensor] = {}
        self.stack: list[tuple[str, str]] = []
        self.constants = 0

    def tensor_node(self, tensor: torch.Tensor) -> fx.Node:
        node = self.nodes.get(id(tensor))
        if node is not None:
            return node
        name = self.names.get(id(tensor))
        if name is None:  # a tensor made outside the recorded ops (a cached attribute): a constant
            name = f"_splitprune_constant_{self.constants}"
            self.constants += 1
            self.root.register_buffer(name, tensor.detach().clone(), persistent=False)
        node = self.graph.get_attr(name)
        node.meta["val"] = self.meta(tensor)
        self.nodes[id(tensor)] = node
        self.alive.append(tensor)
        return node

    def meta(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device.type == "meta":
            return tensor
        copy = self.meta_copies.get(id(tensor))
        if copy is None:
            copy = torch.empty_like(tensor, device=_META)
            self.meta_copies[id(tensor)] = copy
            self.alive.append(tensor)
        return copy

    def _to_meta(self, value: Any) -> Any:
        return self.meta(value) if isinstance(value, torch.Tensor) else value

    def _to_node(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return self.tensor_node(value)
        return self.device if value == _META else value

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        tensors = [v for v in _leaves((args, kwargs)) if isinstance(v, torch.Tensor)]
        on_meta = any(t.device.type == "meta" for t in tensors) or kwargs.get("device") == _META
        run_args, run_kwargs = args, kwargs
        if on_meta and any(t.device.type != "meta" for t in tensors):
            run_args, run_kwargs = _map_leaves(self._to_meta, (args, kwargs))
        try:
            out = _shortcut(func, run_args) if on_meta else None
            if out is None:
                out = func(*run_args, **run_kwargs)
        except Exception as exc:
            raise TraceError(f"{func} cannot run on meta tensors: {str(exc).splitlines()[0][:120]}") from None
        if not any(isinstance(v, torch.Tensor) for v in _leaves(out)):
            if on_meta and func.overloadpacket.__name__ in ("_local_scalar_dense", "nonzero"):
                raise TraceError(f"{func} depends on the data")
            return out  # shapes and Python scalars are baked into the program as constants
        node_args, node_kwargs = _map_leaves(self._to_node, (args, kwargs))
        node = self.graph.create_node(
            "call_function", func, tuple(node_args), dict(node_kwargs), name=func.overloadpacket.__name__
        )
        node.meta["val"] = out
        if self.stack:
            node.meta["nn_module_stack"] = {path: (path, kind) for path, kind in self.stack}
        if isinstance(out, torch.Tensor):
            self.nodes[id(out)] = node
            self.alive.append(out)
        elif isinstance(out, (tuple, list)):
            for index, value in enumerate(out):
                if isinstance(value, torch.Tensor):
                    item = self.graph.call_function(operator.getitem, (node, index))
                    item.meta["val"] = value
                    item.meta["nn_module_stack"] = node.meta.get("nn_module_stack", {})
                    self.nodes[id(value)] = item
                    self.alive.append(value)
        return out


def _map_leaves(fn: Any, value: Any) -> Any:
    """``pytree.tree_map`` over the containers ATen arguments use (tuple, list, dict; None kept).

    pytree's generic flatten and unflatten were a fifth of a YOLO trace; an op's arguments only
    nest plain tuples, lists and dicts.
    """
    kind = type(value)
    if kind is tuple or kind is list:
        return kind(_map_leaves(fn, v) for v in value)
    if kind is dict:
        return {key: _map_leaves(fn, v) for key, v in value.items()}
    return value if value is None else fn(value)


def _leaves(value: Any) -> list[Any]:
    """The leaves of ``value`` (tuples of every kind, lists and dicts opened; None dropped)."""
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [] if value is None else [value]


_ELEMENTWISE = frozenset({"add", "sub", "mul"})  # div of integers changes the dtype: left to torch
_BATCH_NORMS = frozenset(
    {"native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit"}
)


def _shortcut(func: Any, args: Any) -> Any:
    """The meta output of an op whose output has its input's shape, without running it.

    Meta kernels of batch norm and the activations go through Python decompositions (a millisecond
    each, most of a YOLO trace); an empty tensor like the input is the same answer. In-place ops
    return their input and are run.
    """
    name = func.overloadpacket.__name__
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or name.endswith("_"):
        return None
    if name in _BATCH_NORMS:
        return meta_like(x), x.new_empty((0,)), x.new_empty((0,))
    if name in _ELEMENTWISE and len(args) >= 2 and isinstance(args[1], (torch.Tensor, int, float)):
        # The meta kernels work out a stride permutation in Python (a millisecond per call).
        other = args[1]
        shape = torch.broadcast_shapes(x.shape, other.shape) if isinstance(other, torch.Tensor) else x.shape
        return torch.empty(shape, dtype=torch.result_type(x, other), device=_META)
    rule = ATEN_RULES.get(name)
    if rule is not None and rule.same_shape and len(func._schema.returns) == 1:
        return meta_like(x)
    return None


def record_trace(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> fx.GraphModule:
    """Record one meta forward pass of ``model`` (eval mode) as an ATen-level GraphModule.

    Raises:
        TraceError: An op cannot run on meta tensors or depends on the data.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    graph = fx.Graph()
    recorder = _Recorder(model, graph, device)
    meta_inputs = []
    for index, tensor in enumerate(inputs):
        value = torch.empty(tensor.shape, dtype=tensor.dtype, device=_META)
        node = graph.placeholder(f"x{index}" if len(inputs) > 1 else "x")
        node.meta["val"] = value
        recorder.nodes[id(value)] = node
        meta_inputs.append(value)
    paths = {id(m): name for name, m in model.named_modules()}

    def enter(module: nn.Module, args: Any) -> None:
        recorder.stack.append((paths.get(id(module), ""), type(module).__qualname__))

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        recorder.stack.pop()

    was_training = model.training
    model.eval()
    state = _plain_attributes(model)
    hooks = [
        nn.modules.module.register_module_forward_pre_hook(enter),
        nn.modules.module.register_module_forward_hook(leave, always_call=True),
    ]
    try:
        with warnings.catch_warnings(), torch.no_grad(), recorder:
            warnings.simplefilter("ignore")
            output = model(*meta_inputs)
    except TraceError:
        raise
    except Exception as exc:
        reason = exception_reason(exc)[:160]
        raise TraceError(f"meta forward of {type(model).__name__} failed: {reason}") from None
    finally:
        for hook in hooks:
            hook.remove()
        _restore(model, state)
        model.train(was_training)
    leaves, spec = pytree.tree_flatten(output)
    if not all(isinstance(v, torch.Tensor) and id(v) in recorder.nodes for v in leaves):
        raise TraceError(f"{type(model).__name__} returns values the recorder did not produce")
    graph.output(pytree.tree_unflatten([recorder.nodes[id(v)] for v in leaves], spec))
    graph.eliminate_dead_code()
    return _graph_module(model, graph, type(model).__name__)
