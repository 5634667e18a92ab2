"""ONNX files as LayerGraphs: the graph Jetson users hand to trtexec, priced like a traced model.

:class:`OnnxModel` stands in for the network (``load_model("path/model.onnx")`` returns one);
:func:`build_onnx_dag` runs ONNX shape inference (with the input shape the user asks for) and turns
every ONNX node into a DAG node with the attributes of a traced op: the kind and MACs come from the
same :mod:`splitprune.ops` rules, applied to ``meta`` tensors of the inferred shapes. Initializers are
parameters, counted at their first consumer. Estimates and the split solver work on the result; an
ONNX graph cannot run in PyTorch, so ``split --export``, ``serve`` and ``prune`` need the PyTorch model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from . import ops
from .errors import InputShapeError, ModelLoadError, exception_reason
from .ops import NO_WORK_KINDS, OTHER, OpCall, OpRule
from .tracing import Dag

__all__ = ["OnnxModel", "build_onnx_dag", "onnx_graph_module"]

_SHAPE = OpRule("shape", ops=lambda call: 0)
_GEMM = OpRule("linear", macs=ops._matmul_macs)
_MATMUL = OpRule("matmul", macs=ops._matmul_macs)

ONNX_RULES: dict[str, OpRule] = {
    "Conv": ops.CONV,
    "ConvTranspose": ops.CONV_T,
    "Gemm": _GEMM,
    "MatMul": _MATMUL,
    "BatchNormalization": ops.BN,
    **{
        op: ops.NORM
        for op in ("LayerNormalization", "GroupNormalization", "InstanceNormalization", "LpNormalization")
    },
    **{
        op: ops.ACT
        for op in ("Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid",
                   "HardSwish", "Tanh", "Clip", "Mish", "Softplus", "Swish", "Erf")
    },  # fmt: skip
    **{op: ops.SOFTMAX for op in ("Softmax", "LogSoftmax")},
    **{
        op: ops.POOL
        for op in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool")
    },  # fmt: skip
    **{op: ops.REDUCE for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2")},
    **{op: ops.ADD for op in ("Add", "Sub")},
    **{op: ops.MUL for op in ("Mul", "Div")},
    "Concat": ops.CAT,
    **{
        op: ops.VIEW
        for op in ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Split", "Expand")
    },  # fmt: skip
    **{op: ops.IDENTITY for op in ("Identity", "Dropout")},
    **{op: _SHAPE for op in ("Shape", "Constant", "ConstantOfShape", "Size", "Range")},
}
"""ONNX op type -> rule; unlisted ops are kind ``other`` (charged by memory traffic)."""


class OnnxModel(nn.Module):
    """An ONNX file in place of a PyTorch network (for tracing only; it cannot run).

    Attributes:
        path: The ``.onnx`` file.
        input_shape: The first graph input's shape, symbolic dimensions read as 1.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        try:
            import onnx
        except ImportError:
            raise ModelLoadError("onnx is not installed: pip install onnx to read .onnx files") from None
        if not path.is_file():
            raise ModelLoadError(f"ONNX file {str(path)!r} not found: check the path")
        try:
            self.proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ModelLoadError(f"cannot read {str(path)!r} as ONNX: {exc}") from None
        self.path = path
        inputs = _graph_inputs(self.proto)
        if not inputs:
            raise ModelLoadError(f"{str(path)!r} has no graph input")
        dims = inputs[0].type.tensor_type.shape.dim
        self.input_shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)

    def forward(self, *args: Any) -> Any:
        """Refuse to run: an ONNX graph is estimated and split, never run in PyTorch."""
        raise ModelLoadError(f"{self.path} is an ONNX graph: estimate and split it; it cannot run in PyTorch")


def _graph_inputs(proto: Any) -> list[Any]:
    initializers = {i.name for i in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers]


def _dtype(elem_type: int) -> torch.dtype:
    import onnx

    numpy_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    return torch.from_numpy(__import__("numpy").zeros(0, dtype=numpy_dtype)).dtype


def _meta(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def _node_name(node: Any, index: int, taken: set[str]) -> str:
    base = re.sub(r"\W+", "_", node.name or f"{node.op_type}_{index}").strip("_") or f"node_{index}"
    name, n = base, 1
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def build_onnx_dag(model: OnnxModel, input_shapes: list[tuple[int, ...]]) -> Dag:
    """The DAG of ``model``'s ONNX graph at ``input_shapes`` (one per graph input).

    Raises:
        InputShapeError: The number of inputs differs, or shape inference fails at that shape.
    """
    import onnx

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    inputs = _graph_inputs(proto)
    if len(inputs) != len(input_shapes):
        raise InputShapeError(f"{model.path} takes {len(inputs)} inputs, {len(input_shapes)} given")
    for value, shape in zip(inputs, input_shapes, strict=True):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise InputShapeError(
                f"{model.path} input {value.name!r} has {len(dims)} dimensions, not {len(shape)}; "
                "fix --input-shape"
            )
        for dim, size in zip(dims, shape, strict=True):
            dim.Clear()
            dim.dim_value = int(size)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    except Exception as exc:
        reason = exception_reason(exc)
        raise InputShapeError(f"ONNX shape inference failed for {model.path}: {reason[:200]}") from None

    values: dict[str, torch.Tensor] = {}
    for info in [*proto.graph.input, *proto.graph.value_info, *proto.graph.output]:
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape") and all(d.dim_value > 0 for d in tensor_type.shape.dim):
            shape = tuple(d.dim_value for d in tensor_type.shape.dim)
            values[info.name] = _meta(shape, _dtype(tensor_type.elem_type))
    params: dict[str, torch.Tensor] = {
        init.name: _meta(tuple(init.dims), _dtype(init.data_type)) for init in proto.graph.initializer
    }

    dag = Dag()
    producer: dict[str, str] = {}
    counted: set[str] = set()
    taken: set[str] = set()
    for value in _graph_inputs(proto):
        name = _node_name(onnx.helper.make_node("Input", [], [], name=value.name), 0, taken)
        _add(dag, name, "input", [values.get(value.name)], preds=[], module="", target="input")
        producer[value.name] = name
        dag.inputs.append(name)
    for index, node in enumerate(proto.graph.node):
        name = _node_name(node, index, taken)
        rule = ONNX_RULES.get(node.op_type, OTHER)
        args = [values.get(i, params.get(i)) if i else None for i in node.input]
        outputs = [values.get(o) for o in node.output]
        preds = list(dict.fromkeys(producer[i] for i in node.input if i in producer))
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        groups = {"groups": attrs.get("group", 1)}
        call = OpCall(module=None, args=tuple(args), kwargs=groups, output=outputs[0])
        known = all(isinstance(t, torch.Tensor) for t in [*args[: _needed(rule)], outputs[0]])
        macs = int(rule.macs(call)) if known else 0
        kind = rule.kind if any(isinstance(o, torch.Tensor) for o in outputs) or rule is _SHAPE else "shape"
        new_params = [i for i in node.input if i in params and i not in counted]
        counted.update(new_params)
        _add(dag, name, kind, outputs, preds=preds, module=node.name, target=node.op_type)
        attrs_out = dag.nodes[name]
        attrs_out["macs"] = macs
        attrs_out["ops"] = int(rule.ops(call)) if known and kind not in NO_WORK_KINDS else 0
        attrs_out["kernels"] = int(rule.kernels(call)) if known and kind == "conv" else 0
        attrs_out["params"] = sum(params[i].numel() for i in new_params)
        attrs_out["param_bytes"] = sum(params[i].numel() * params[i].element_size() for i in new_params)
        in_bytes = sum(_bytes(values.get(i)) for i in node.input if i in producer)
        work = kind not in NO_WORK_KINDS
        attrs_out["mem_bytes"] = in_bytes + attrs_out["out_bytes"] + attrs_out["param_bytes"] if work else 0
        attrs_out["dispatches"] = 1 if work else 0
        for output in node.output:
            producer[output] = name
    graph_outputs = [o.name for o in proto.graph.output]
    _add(
        dag, "output", "output", [values.get(o) for o in graph_outputs],
        preds=[producer[o] for o in graph_outputs if o in producer], module="", target="output",
    )  # fmt: skip
    dag.output = "output"
    return dag


def _needed(rule: OpRule) -> int:
    """How many leading arguments a rule's MAC count reads (all must have known shapes)."""
    return 2 if rule.kind in ("conv", "linear", "matmul") else 1


def _bytes(value: Any) -> int:
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0


def _add(
    dag: Dag, name: str, kind: str, outputs: list[Any], *, preds: list[str], module: str, target: str
) -> None:
    tensors = [o for o in outputs if isinstance(o, torch.Tensor)]
    dag.order.append(name)
    dag.preds[name] = preds
    dag.nodes[name] = dict(
        kind=kind,
        module=module,
        target=target,
        input_shapes=[s for p in preds for s in dag.nodes[p]["output_shapes"]],
        output_shapes=[tuple(t.shape) for t in tensors],
        dtype=str(tensors[0].dtype).removeprefix("torch.") if tensors else "",
        out_bytes=sum(_bytes(t) for t in tensors),
        params=0,
        param_bytes=0,
        macs=0,
        ops=0,
        mem_bytes=0,
        kernels=0,
        dispatches=0,
        is_tensor=bool(tensors),
    )


def onnx_graph_module(dag: Dag) -> fx.GraphModule:
    """A GraphModule with the DAG's node names whose calls raise: ONNX graphs are not run in PyTorch."""
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    for name in dag.order:
        if name in dag.inputs:
            env[name] = graph.placeholder(name)
        elif name == dag.output:
            graph.output(tuple(env[p] for p in dag.preds[name]))
        else:
            env[name] = graph.create_node(
                "call_function", _not_runnable, tuple(env[p] for p in dag.preds[name]), name=name
            )
    return fx.GraphModule(nn.Module(), graph, "OnnxGraph")


def _not_runnable(*args: Any) -> Any:
    raise ModelLoadError("an ONNX graph cannot run in PyTorch: export and serve need the PyTorch model")

