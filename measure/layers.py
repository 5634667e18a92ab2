"""What a sweep can measure: one registry entry per grid table, keyed by the table's name.

Each entry builds the module and its inputs for one grid point and counts, with plain formulas, what the
fit needs: the layer ``kind`` as ``splitprune``'s graph names it, ``macs``, ``mem_bytes`` (every tensor
read and written, weights included) and ``kernels`` (conv output channels per group, else 0). Adding a
layer kind to the sweep is one entry here. CNN layers are here; the transformer layers (linear on tokens,
matmul, attention, layer norm, softmax, GELU, layer scale, patch embedding) are in
:mod:`measure.layers_transformer` and merged into :data:`LAYERS`. Whole networks (table ``network``) are
measured for validation only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["CNN_LAYERS", "LAYERS", "LayerCounts", "LayerSpec", "build_network", "conv_output_size"]

Params = dict[str, Any]


@dataclass(frozen=True)
class LayerCounts:
    """Sizes of one layer at batch ``N``.

    Attributes:
        kind: Layer kind as ``splitprune.graph`` names it (``conv``, ``linear``, ``bn``, ``act`` ...).
        macs: Multiply-accumulates.
        mem_bytes: Bytes read plus written, parameters included.
        kernels: Kernels (output channels) per group of a convolution, else 0.
        input_shape: Shape of the (first) input tensor.
    """

    kind: str
    macs: int
    mem_bytes: int
    kernels: int
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class LayerSpec:
    """One sweepable layer kind.

    Attributes:
        required: Grid keys every point must give.
        optional: Grid keys with their defaults.
        build: ``(params, batch) -> (module, inputs)`` on the CPU in fp32.
        count: ``(params, batch, element_bytes) -> LayerCounts``.
    """

    required: tuple[str, ...]
    optional: dict[str, Any]
    build: Callable[[Params, int], tuple[nn.Module, tuple[torch.Tensor, ...]]]
    count: Callable[[Params, int, int], LayerCounts]


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Spatial output size of a convolution or pooling window."""
    return (size + 2 * padding - kernel_size) // stride + 1


class _Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def _image(p: Params, batch: int, channels_key: str) -> tuple[int, int, int, int]:
    return (batch, p[channels_key], p["spatial"], p["spatial"])


def _conv_build(p: Params, batch: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    module = nn.Conv2d(
        p["in_channels"],
        p["kernels"],
        p["kernel_size"],
        stride=p["stride"],
        padding=p["kernel_size"] // 2,
        groups=p["groups"],
        bias=p["bias"],
    )
    return module, (torch.randn(_image(p, batch, "in_channels")),)


def _conv_count(p: Params, batch: int, nbytes: int) -> LayerCounts:
    out = conv_output_size(p["spatial"], p["kernel_size"], p["stride"], p["kernel_size"] // 2)
    per_kernel = p["in_channels"] // p["groups"] * p["kernel_size"] ** 2
    weights = p["kernels"] * per_kernel + (p["kernels"] if p["bias"] else 0)
    shape = _image(p, batch, "in_channels")
    in_elems = batch * p["in_channels"] * p["spatial"] ** 2
    out_elems = batch * p["kernels"] * out * out
    macs = out_elems * per_kernel
    kernels_per_group = p["kernels"] // p["groups"]
    return LayerCounts("conv", macs, (in_elems + out_elems + weights) * nbytes, kernels_per_group, shape)


def _depthwise(p: Params) -> Params:
    channels = p["channels"]
    return {**p, "in_channels": channels, "kernels": channels, "groups": channels}


def _linear_build(p: Params, batch: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    module = nn.Linear(p["in_features"], p["out_features"], bias=p["bias"])
    return module, (torch.randn(batch, p["in_features"]),)


def _linear_count(p: Params, batch: int, nbytes: int) -> LayerCounts:
    fin, fout = p["in_features"], p["out_features"]
    weights = fin * fout + (fout if p["bias"] else 0)
    mem = (batch * fin + batch * fout + weights) * nbytes
    return LayerCounts("linear", batch * fin * fout, mem, 0, (batch, fin))


def _elementwise(
    kind: str,
    make: Callable[[Params], nn.Module],
    inputs: int,
    params_per_channel: int,
    extra_bytes: int = 0,
) -> LayerSpec:
    def build(p: Params, batch: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        shape = _image(p, batch, "channels")
        return make(p), tuple(torch.randn(shape) for _ in range(inputs))

    def count(p: Params, batch: int, nbytes: int) -> LayerCounts:
        elems = batch * p["channels"] * p["spatial"] ** 2
        mem = ((inputs + 1) * elems + params_per_channel * p["channels"]) * nbytes + extra_bytes
        return LayerCounts(kind, 0, mem, 0, _image(p, batch, "channels"))

    return LayerSpec(("channels", "spatial"), {}, build, count)


def _maxpool_count(p: Params, batch: int, nbytes: int) -> LayerCounts:
    out = conv_output_size(p["spatial"], p["kernel_size"], p["stride"], p["kernel_size"] // 2)
    elems_in = batch * p["channels"] * p["spatial"] ** 2
    elems_out = batch * p["channels"] * out * out
    return LayerCounts("pool", 0, (elems_in + elems_out) * nbytes, 0, _image(p, batch, "channels"))


def _maxpool_build(p: Params, batch: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    module = nn.MaxPool2d(p["kernel_size"], stride=p["stride"], padding=p["kernel_size"] // 2)
    return module, (torch.randn(_image(p, batch, "channels")),)


def _avgpool_count(p: Params, batch: int, nbytes: int) -> LayerCounts:
    elems_in = batch * p["channels"] * p["spatial"] ** 2
    mem = (elems_in + batch * p["channels"]) * nbytes
    return LayerCounts("pool", 0, mem, 0, _image(p, batch, "channels"))


CNN_LAYERS: dict[str, LayerSpec] = {
    "conv": LayerSpec(
        ("in_channels", "kernels", "kernel_size", "spatial"),
        {"stride": 1, "groups": 1, "bias": False},
        _conv_build,
        _conv_count,
    ),
    "dwconv": LayerSpec(
        ("channels", "kernel_size", "spatial"),
        {"stride": 1, "bias": False},
        lambda p, batch: _conv_build(_depthwise(p), batch),
        lambda p, batch, nbytes: _conv_count(_depthwise(p), batch, nbytes),
    ),
    "linear": LayerSpec(("in_features", "out_features"), {"bias": True}, _linear_build, _linear_count),
    # Batch norm reads weight, bias, running mean and variance (4 per channel) and owns an int64 counter.
    "batchnorm": _elementwise("bn", lambda p: nn.BatchNorm2d(p["channels"]), 1, 4, extra_bytes=8),
    "relu": _elementwise("act", lambda p: nn.ReLU(), 1, 0),
    "add": _elementwise("add", lambda p: _Add(), 2, 0),
    "maxpool": LayerSpec(
        ("channels", "spatial"), {"kernel_size": 3, "stride": 2}, _maxpool_build, _maxpool_count
    ),
    "avgpool": LayerSpec(
        ("channels", "spatial"),
        {},
        lambda p, batch: (nn.AdaptiveAvgPool2d(1), (torch.randn(_image(p, batch, "channels")),)),
        _avgpool_count,
    ),
}


# The transformer entries use LayerSpec and LayerCounts above, so they are imported after them.
from .layers_transformer import TRANSFORMER_LAYERS  # noqa: E402

LAYERS: dict[str, LayerSpec] = {**CNN_LAYERS, **TRANSFORMER_LAYERS}


def build_network(spec: str, input_shape: tuple[int, ...]) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build a whole network for validation rows: ``torchvision:NAME`` with random weights.

    Raises:
        ValueError: The spec is not ``torchvision:NAME`` or torchvision does not know the name.
    """
    prefix, _, name = spec.partition(":")
    if prefix != "torchvision" or not name:
        raise ValueError(f"network {spec!r}: use torchvision:NAME")
    try:
        import torchvision
    except ImportError:
        raise ValueError("torchvision is not installed: pip install torchvision") from None
    try:
        model = torchvision.models.get_model(name, weights=None)
    except ValueError:
        raise ValueError(f"network {spec!r}: torchvision has no model {name!r}") from None
    return model, (torch.randn(input_shape),)
