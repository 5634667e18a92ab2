"""The second tracer: ``torch.export`` (non-strict) at the ATen level, for models torch.fx cannot trace.

fx fails on Python control flow over tensors' structure (YOLO's ``Detect`` head iterates over a list
of proxies, torchvision's detectors over images). ``torch.export`` runs the model's Python for real,
on fake tensors, and records the ATen ops it dispatches, so any model whose shapes do not depend on
its data traces. :func:`export_trace` returns ``ExportedProgram.module()``: a runnable
``torch.fx.GraphModule`` whose parameters are ``get_attr`` nodes (so :mod:`splitprune.export` cuts it
as it cuts an fx trace) and :func:`build_export_dag` reads shapes from each node's ``meta["val"]``
(export already propagated them) and prices ops with :func:`splitprune.ops.aten_rule`.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .errors import InputShapeError, TraceError, exception_reason
from .ops import NO_WORK_KINDS, OpCall, aten_rule
from .tracing import Dag, _add_edges, _add_node, _kind, _tensor_bytes

__all__ = ["build_export_dag", "export_trace"]


def export_trace(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> fx.GraphModule:
    """Export ``model`` (eval mode, non-strict) on inputs shaped like ``inputs``; return its GraphModule.

    The inputs are only shapes and dtypes: they are re-made as zeros on the model's device (export
    computes on fake tensors, so nothing real runs).

    Raises:
        TraceError: ``torch.export`` cannot trace the model (e.g. shapes depend on data); the message
            gives export's first line.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    args = tuple(torch.zeros(t.shape, dtype=t.dtype, device=device) for t in inputs)
    was_training = model.training
    model.eval()
    state = _plain_attributes(model)
    stack_traces = torch.fx.config.do_not_emit_stack_traces
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # Each node's Python stack trace costs two thirds of an export (symbolising frames);
            # estimates never read them.
            torch.fx.config.do_not_emit_stack_traces = True
            program = torch.export.export(model, args, strict=False)
            gm = program.module()
    except Exception as exc:  # export raises many types; all mean "cannot trace"
        reason = exception_reason(exc)
        raise TraceError(
            f"torch.export cannot trace {type(model).__name__}: {reason[:200]}; move data-dependent "
            "post-processing (NMS, filtering) out of forward()"
        ) from None
    finally:
        torch.fx.config.do_not_emit_stack_traces = stack_traces
        _restore(model, state)
        model.train(was_training)
    assert isinstance(gm, fx.GraphModule)
    _plain_signature(gm)
    return gm


def _plain_signature(gm: fx.GraphModule) -> None:
    """Make ``gm`` take its inputs and return its output as an fx trace does (no pytree flattening).

    The exported module flattens its arguments and outputs through pytree specs in generated code;
    with the plain code generator the output node holds the model's own output structure, so
    :func:`splitprune.export.split_modules` treats both tracers' modules alike.
    """
    from torch.utils import _pytree as pytree

    out_spec = getattr(gm, "_out_spec", None)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    if out_spec is not None:
        flat = output.args[0]
        flat = list(flat) if isinstance(flat, (tuple, list)) else [flat]
        output.args = (pytree.tree_unflatten(flat, out_spec),)
    gm.graph._codegen = fx.graph.CodeGen()
    gm.recompile()


_MODULE_SLOTS = frozenset({"_parameters", "_buffers", "_modules"})


def _plain_attributes(model: nn.Module) -> dict[nn.Module, dict[str, Any]]:
    """Each module's plain attributes, to restore after export.

    Export runs forward(); caches it fills (YOLO's anchors) would otherwise keep fake tensors that
    break the next real call.
    """
    return {m: {k: v for k, v in vars(m).items() if k not in _MODULE_SLOTS} for m in model.modules()}


def _restore(model: nn.Module, state: dict[nn.Module, dict[str, Any]]) -> None:
    for module, saved in state.items():
        for key in [k for k in vars(module) if k not in _MODULE_SLOTS and k not in saved]:
            delattr(module, key)
        for key, value in saved.items():
            if vars(module).get(key, None) is not value:
                object.__setattr__(module, key, value)


def _attr(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _val(node: Any) -> Any:
    return node.meta.get("val") if isinstance(node, fx.Node) else node


_FLATTENING_VIEWS = frozenset({"view", "_unsafe_view", "reshape", "flatten"})


def _flattened_rows(node: fx.Node) -> bool:
    """Whether an ``addmm``'s rows are a >2-D tensor flattened (``F.linear`` over a sequence)."""
    if getattr(node.target, "overloadpacket", None) is not torch.ops.aten.addmm or len(node.args) < 2:
        return False
    source = node.args[1]
    if not isinstance(source, fx.Node) or not source.args:
        return False
    packet = getattr(source.target, "overloadpacket", None)
    if packet is None or packet.__name__ not in _FLATTENING_VIEWS:
        return False
    base = _val(source.args[0])
    return isinstance(base, torch.Tensor) and base.dim() > 2


def build_export_dag(gm: fx.GraphModule, inputs: list[torch.Tensor]) -> Dag:
    """The DAG of an exported GraphModule: node values from ``meta["val"]``, rules from the ATen table.

    Raises:
        InputShapeError: The number of inputs does not match the program's.
    """
    dag = Dag()
    attr_owner: dict[str, str] = {}
    attr_bytes: dict[str, tuple[int, int]] = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(inputs):
        raise InputShapeError(
            f"model takes {len(placeholders)} inputs, {len(inputs)} given; pass one example tensor per "
            "forward() argument"
        )
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = _attr(gm, str(node.target))
            count = value.numel() if isinstance(value, nn.Parameter) else 0
            attr_bytes[node.name] = (count, _tensor_bytes(value))
            continue
        if node.op in ("placeholder", "output"):
            kind = "input" if node.op == "placeholder" else "output"
            value = _val(node) if node.op == "placeholder" else fx.node.map_arg(node.args[0], _val)
            if node.op == "placeholder":
                dag.inputs.append(node.name)
            else:
                dag.output = node.name
            _add_node(dag, node, kind, value, params=(0, 0), macs=0, ops=0, in_bytes=0, kernels=0)
            dag.nodes[node.name]["dispatches"] = 0
            _add_edges(dag, node, attr_owner, attr_bytes)
            continue
        value = _val(node)
        args, kwargs = fx.node.map_arg(node.args, _val), fx.node.map_arg(node.kwargs, _val)
        rule = aten_rule(node.target) if node.op == "call_function" else aten_rule(None)
        call = OpCall(module=None, args=tuple(args), kwargs=dict(kwargs), output=value)
        kind = _kind(rule, value, args)
        if kind == "linear" and _flattened_rows(node):
            kind = "matmul"  # as fx calls a linear layer over a sequence or a feature map
        in_bytes = sum(_tensor_bytes(_val(a)) for a in node.all_input_nodes if a.op != "get_attr")
        _add_node(
            dag,
            node,
            kind,
            value,
            params=(0, 0),
            macs=int(rule.macs(call)) if kind != "shape" else 0,
            ops=int(rule.ops(call)) if kind != "shape" else 0,
            in_bytes=in_bytes,
            kernels=int(rule.kernels(call)) if kind == "conv" else 0,
        )
        dag.nodes[node.name]["dispatches"] = 0 if kind in NO_WORK_KINDS else 1
        _add_edges(dag, node, attr_owner, attr_bytes)
    for attrs in dag.nodes.values():
        work = attrs["kind"] not in NO_WORK_KINDS
        attrs["mem_bytes"] = attrs["in_bytes"] + attrs["out_bytes"] + attrs["param_bytes"] if work else 0
        del attrs["in_bytes"]
    return dag

