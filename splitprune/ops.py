"""The per-operation registry: layer kind, MAC count and shape shortcut for every traced op.

Adding an op is one entry: map the module class, function or method name to an :class:`OpRule`.
A rule's ``macs`` function sees the op's (meta) inputs and output through an :class:`OpCall`.
Ops not listed here are traced all the same, as kind ``other`` (charged by memory traffic).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = [
    "NO_WORK_KINDS", "OpCall", "OpRule", "aten_rule", "function_rule", "method_rule", "module_rule",
]  # fmt: skip

# Kinds that launch no work and move no data: graph inputs/outputs, views, identities, shape values.
NO_WORK_KINDS = frozenset({"input", "output", "reshape", "identity", "shape"})


@dataclass(frozen=True)
class OpCall:
    """One traced op as a rule sees it: the leaf module (if any), meta arguments and output."""

    module: Any  # the leaf nn.Module, or None for functions and methods
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """Positional argument ``index`` or keyword ``name``."""
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)

    @property
    def first_tensor(self) -> torch.Tensor | None:
        """The first tensor argument, if any."""
        for value in (*self.args, *self.kwargs.values()):
            if isinstance(value, torch.Tensor):
                return value
        return None


def _numel(value: Any) -> int:
    return value.numel() if isinstance(value, torch.Tensor) else 0


def _zero(call: OpCall) -> int:
    return 0


def _out_numel(call: OpCall) -> int:
    out = call.output
    if isinstance(out, (tuple, list)):
        return sum(_numel(t) for t in out)
    return _numel(out)


def _in_numel(call: OpCall) -> int:
    return _numel(call.first_tensor)


@dataclass(frozen=True)
class OpRule:
    """How to account for one op.

    Attributes:
        kind: Layer kind (conv, linear, matmul, attention, bn, norm, act, ...).
        macs: Multiply-accumulates of the op.
        ops: Other arithmetic (elementwise, pooling), counted apart from MACs.
        kernels: Kernels per group of a convolution (output channels / groups), the ``K`` of the
            board cost model; 0 for other ops.
        same_shape: The output has the first input's shape and dtype, so shape propagation can skip
            running the op (batch norm on meta tensors costs milliseconds per call).
    """

    kind: str
    macs: Callable[[OpCall], int] = field(default=_zero)
    ops: Callable[[OpCall], int] = field(default=_out_numel)
    kernels: Callable[[OpCall], int] = field(default=_zero)
    same_shape: bool = False


# --- MAC counting -------------------------------------------------------------------------------


def _conv_macs(call: OpCall) -> int:
    weight = call.module.weight if call.module is not None else call.arg(1, "weight")
    kernel_elems = math.prod(weight.shape[2:])
    return _numel(call.output) * int(weight.shape[1]) * kernel_elems


def _conv_groups(call: OpCall) -> int:
    if call.module is not None:
        return int(call.module.groups)
    return int(call.arg(6, "groups", 1))  # position 6 in F.conv*d and F.conv_transpose*d alike


def _conv_kernels(call: OpCall) -> int:
    out = call.output
    return int(out.shape[1]) // _conv_groups(call) if out.dim() >= 2 else 0


def _convolution_kernels(call: OpCall) -> int:
    out = call.output
    return int(out.shape[1]) // int(call.arg(8, "groups", 1)) if out.dim() >= 2 else 0


def _convolution_macs(call: OpCall) -> int:
    """``aten.convolution`` (transposed flag at position 6) in either direction."""
    return _conv_transpose_macs(call) if call.arg(6, "transposed", False) else _conv_macs(call)


def _conv_transpose_macs(call: OpCall) -> int:
    weight = call.module.weight if call.module is not None else call.arg(1, "weight")
    kernel_elems = math.prod(weight.shape[2:])
    return _numel(call.arg(0, "input")) * int(weight.shape[1]) * kernel_elems


def _linear_macs(call: OpCall) -> int:
    weight = call.module.weight if call.module is not None else call.arg(1, "weight")
    return _numel(call.output) * int(weight.shape[-1])


def _bilinear_macs(call: OpCall) -> int:
    weight = call.module.weight
    return _numel(call.output) * int(weight.shape[1]) * int(weight.shape[2])


def _matmul_macs_of(a: Any, out: Any) -> int:
    if not isinstance(a, torch.Tensor):
        return 0
    return _numel(out) * int(a.shape[-1])


def _matmul_macs(call: OpCall) -> int:
    return _matmul_macs_of(call.arg(0, "input"), call.output)


def _addmm_macs(call: OpCall) -> int:
    return _matmul_macs_of(call.arg(1, "mat1" if "mat1" in call.kwargs else "batch1"), call.output)


def _einsum_macs(call: OpCall) -> int:
    equation = call.args[0]
    operands = call.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, tensor in zip(inputs, operands, strict=False):
        if "..." in letters or not isinstance(tensor, torch.Tensor):
            return _numel(call.output)
        sizes.update(zip(letters, tensor.shape, strict=False))
    return int(math.prod(sizes.values())) if len(operands) > 1 else 0


def _sdpa_macs(call: OpCall) -> int:
    q, k, v = call.arg(0, "query"), call.arg(1, "key"), call.arg(2, "value")
    rows = math.prod(q.shape[:-1])
    return int(rows * k.shape[-2] * (q.shape[-1] + v.shape[-1]))


def _mha_macs(call: OpCall) -> int:
    mha = call.module
    query, key = call.arg(0, "query"), call.arg(1, "key")
    batch_first = getattr(mha, "batch_first", False)
    if query.dim() == 2:
        batch, q_len, k_len = 1, query.shape[0], key.shape[0]
    elif batch_first:
        batch, q_len, k_len = query.shape[0], query.shape[1], key.shape[1]
    else:
        batch, q_len, k_len = query.shape[1], query.shape[0], key.shape[0]
    e = mha.embed_dim
    projections = q_len * e * e + k_len * e * (mha.kdim + mha.vdim) + q_len * e * e
    attention = 2 * q_len * k_len * e
    return int(batch * (projections + attention))


def _swin_window_attention_macs(call: OpCall) -> int:
    x = call.arg(0, "input")
    window = call.arg(4, "window_size")
    batch, height, width, channels = x.shape
    padded_h = math.ceil(height / window[0]) * window[0]
    padded_w = math.ceil(width / window[1]) * window[1]
    tokens = batch * padded_h * padded_w
    window_tokens = window[0] * window[1]
    return int(tokens * channels * 4 * channels + 2 * tokens * window_tokens * channels)


# --- the tables ---------------------------------------------------------------------------------

CONV = OpRule("conv", macs=_conv_macs, kernels=_conv_kernels)
CONV_T = OpRule("conv", macs=_conv_transpose_macs, kernels=_conv_kernels)
LINEAR = OpRule("linear", macs=_linear_macs)
MATMUL = OpRule("matmul", macs=_matmul_macs)
BN = OpRule("bn", same_shape=True)
NORM = OpRule("norm", same_shape=True)
ACT = OpRule("act", same_shape=True)
SOFTMAX = OpRule("softmax", same_shape=True)
POOL = OpRule("pool", ops=_in_numel)
REDUCE = OpRule("reduce", ops=_in_numel)
ADD = OpRule("add")
MUL = OpRule("mul")
CAT = OpRule("cat", ops=_zero)
VIEW = OpRule("reshape", ops=_zero)
IDENTITY = OpRule("identity", ops=_zero, same_shape=True)
OTHER = OpRule("other")

_ACT_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Mish, nn.Softplus,
)  # fmt: skip
_POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip

MODULE_RULES: dict[type[nn.Module], OpRule] = {
    **{cls: CONV for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d)},
    **{cls: CONV_T for cls in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)},
    nn.Linear: LINEAR,
    nn.Bilinear: OpRule("linear", macs=_bilinear_macs),
    nn.MultiheadAttention: OpRule("attention", macs=_mha_macs),
    **{cls: BN for cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)},
    **{
        cls: NORM
        for cls in (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
                    nn.InstanceNorm3d, nn.LocalResponseNorm)
    },  # fmt: skip
    **{cls: ACT for cls in _ACT_MODULES},
    **{cls: SOFTMAX for cls in (nn.Softmax, nn.LogSoftmax)},
    **{cls: POOL for cls in _POOL_MODULES},
    **{cls: IDENTITY for cls in (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)},
    nn.Flatten: VIEW,
    nn.Unflatten: VIEW,
}

FUNCTION_RULES: dict[Any, OpRule] = {
    **{fn: CONV for fn in (F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d)},
    **{fn: CONV_T for fn in (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)},
    F.linear: LINEAR,
    **{fn: MATMUL for fn in (torch.matmul, operator.matmul, torch.mm, torch.bmm)},
    **{fn: OpRule("matmul", macs=_addmm_macs) for fn in (torch.addmm, torch.baddbmm)},
    torch.einsum: OpRule("matmul", macs=_einsum_macs),
    F.scaled_dot_product_attention: OpRule("attention", macs=_sdpa_macs),
    F.batch_norm: BN,
    **{fn: NORM for fn in (F.layer_norm, F.group_norm, F.instance_norm, F.normalize)},
    **{
        fn: ACT
        for fn in (F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.hardswish,
                   F.hardsigmoid, F.hardtanh, F.mish, F.softplus, F.sigmoid, F.tanh,
                   torch.relu, torch.sigmoid, torch.tanh)
    },  # fmt: skip
    **{fn: SOFTMAX for fn in (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax)},
    **{
        fn: POOL
        for fn in (F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d,
                   F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
                   F.adaptive_avg_pool3d, F.adaptive_max_pool2d)
    },  # fmt: skip
    **{fn: REDUCE for fn in (torch.mean, torch.sum, torch.amax, torch.max)},
    **{fn: ADD for fn in (operator.add, operator.iadd, operator.sub, torch.add, torch.sub)},
    **{fn: MUL for fn in (operator.mul, operator.imul, operator.truediv, torch.mul, torch.div)},
    **{fn: CAT for fn in (torch.cat, torch.concat, torch.stack)},
    **{
        fn: VIEW
        for fn in (torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze,
                   torch.unsqueeze, torch.chunk, torch.split, torch.unbind, operator.getitem)
    },  # fmt: skip
    F.dropout: IDENTITY,
}

METHOD_RULES: dict[str, OpRule] = {
    **{name: MATMUL for name in ("matmul", "mm", "bmm")},
    **{name: ACT for name in ("relu", "relu_", "sigmoid", "sigmoid_", "tanh")},
    "softmax": SOFTMAX,
    **{name: REDUCE for name in ("mean", "sum", "amax", "max")},
    **{name: ADD for name in ("add", "add_", "sub", "sub_")},
    **{name: MUL for name in ("mul", "mul_", "div", "div_")},
    **{
        name: VIEW
        for name in ("view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze",
                     "chunk", "split", "unbind", "expand", "view_as", "unflatten")
    },  # fmt: skip
}

# Functions that torchvision wraps with torch.fx.wrap appear as one call; keyed by qualified name
# so that this registry does not import torchvision.
NAMED_FUNCTION_RULES: dict[str, OpRule] = {
    "torchvision.models.swin_transformer.shifted_window_attention": OpRule(
        "attention", macs=_swin_window_attention_macs
    ),
}


# ATen ops, as torch.export records them (pre-dispatch IR), keyed by overload packet name: their
# schemas put weight, stride and groups where the functional forms do, so the rules above apply.
_aten_view_ops = (
    "view", "_unsafe_view", "reshape", "permute", "transpose", "t", "squeeze", "unsqueeze", "flatten",
    "unflatten", "chunk", "split", "split_with_sizes", "unbind", "expand", "expand_as", "select",
    "slice", "narrow", "alias", "detach", "view_as", "lift_fresh_copy", "contiguous", "movedim",
)  # fmt: skip
_aten_act_ops = (
    "relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu", "gelu",
    "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "hardtanh",
    "hardtanh_", "sigmoid", "sigmoid_", "tanh", "tanh_", "mish", "mish_", "softplus", "prelu",
    "_prelu_kernel", "clamp", "clamp_", "clamp_min", "clamp_max",
)  # fmt: skip
_aten_pool_ops = (
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
)  # fmt: skip
ATEN_RULES: dict[str, OpRule] = {
    **{name: CONV for name in ("conv1d", "conv2d", "conv3d")},
    **{name: CONV_T for name in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")},
    "convolution": OpRule("conv", macs=_convolution_macs, kernels=_convolution_kernels),
    "_convolution": OpRule("conv", macs=_convolution_macs, kernels=_convolution_kernels),
    "linear": LINEAR,
    **{name: MATMUL for name in ("matmul", "mm", "bmm")},
    **{name: OpRule("matmul", macs=_addmm_macs) for name in ("addmm", "baddbmm")},
    "einsum": OpRule("matmul", macs=_einsum_macs),
    **{
        name: OpRule("attention", macs=_sdpa_macs)
        for name in ("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu")
    },
    **{
        name: BN
        for name in ("batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm",
                     "_native_batch_norm_legit", "cudnn_batch_norm")
    },  # fmt: skip
    **{
        name: NORM
        for name in ("layer_norm", "native_layer_norm", "group_norm", "native_group_norm",
                     "instance_norm", "rms_norm", "_fused_rms_norm")
    },  # fmt: skip
    **{name: ACT for name in _aten_act_ops},
    **{name: SOFTMAX for name in ("softmax", "_softmax", "log_softmax", "_log_softmax")},
    **{name: POOL for name in _aten_pool_ops},
    **{name: REDUCE for name in ("mean", "sum", "amax", "amin", "max", "min", "var_mean", "var")},
    **{name: ADD for name in ("add", "add_", "sub", "sub_", "rsub")},
    **{name: MUL for name in ("mul", "mul_", "div", "div_")},
    **{name: CAT for name in ("cat", "concat", "stack")},
    **{name: VIEW for name in _aten_view_ops},
    **{name: IDENTITY for name in ("dropout", "feature_dropout", "type_as")},
}


def aten_rule(target: Any) -> OpRule:
    """Rule for an ATen op (an ``OpOverload`` such as ``torch.ops.aten.conv2d.default``)."""
    packet = getattr(target, "overloadpacket", None)
    if packet is None:
        return function_rule(target)  # operator.getitem and other Python callables in the graph
    return ATEN_RULES.get(packet.__name__, OTHER)


def module_rule(module: nn.Module) -> OpRule:
    """Rule for a leaf module, by its class or the nearest registered base class."""
    for cls in type(module).__mro__:
        rule = MODULE_RULES.get(cls)
        if rule is not None:
            return rule
    return OTHER


def function_rule(target: Any) -> OpRule:
    """Rule for a ``call_function`` target."""
    try:
        rule = FUNCTION_RULES.get(target)
    except TypeError:  # unhashable target
        rule = None
    if rule is not None:
        return rule
    qualified = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
    return NAMED_FUNCTION_RULES.get(qualified, OTHER)


def method_rule(name: str) -> OpRule:
    """Rule for a ``call_method`` target (a tensor method name)."""
    return METHOD_RULES.get(name, OTHER)
