"""Transformer layer kinds for the sweep, as the torchvision ViT, Swin and ConvNeXt graphs use them.

One registry entry per grid table (see :mod:`measure.layers`), merged into
:data:`measure.layers.LAYERS`. ``kind`` is what ``splitprune``'s tracer names the op, and ``macs`` and
``mem_bytes`` follow its rules (``mem_bytes`` = tensors read + written + the op's parameters and
buffers; a tensor passed twice, as in self-attention, is read once):

============== ============================================================= ===========
table          op                                                            kind
============== ============================================================= ===========
linear_tokens  ``nn.Linear`` on ``(N, tokens, in)`` (a GEMM, not an FC layer) ``matmul``
matmul         ``a @ b`` on ``(N, heads, m, k) x (N, heads, k, n)``          ``matmul``
sdpa           ``F.scaled_dot_product_attention`` on ``(N, heads, tokens, d)`` ``attention``
mha            ``nn.MultiheadAttention`` self-attention (ViT), batch first   ``attention``
layernorm      ``nn.LayerNorm`` on ``(N, tokens, C)``                        ``norm``
layernorm2d    ``nn.LayerNorm`` over a channels-last view of ``(N, C, S, S)`` ``norm``
softmax        ``nn.Softmax(-1)`` on ``(N, heads, tokens, tokens)``          ``softmax``
gelu           ``nn.GELU`` on ``(N, tokens, features)``                      ``act``
layerscale     ``gamma * x``, ``gamma`` of shape ``(C, 1, 1)`` (ConvNeXt)     ``mul``
patchify       ``nn.Conv2d`` with kernel = stride = ``patch``, no padding   ``conv``
============== ============================================================= ===========

The 7x7 depthwise convolutions of ConvNeXt are ``[[dwconv]]`` points with ``kernel_size = 7``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from .layers import LayerCounts, LayerSpec, Params

__all__ = ["TRANSFORMER_LAYERS"]

Built = tuple[nn.Module, tuple[torch.Tensor, ...]]


class _Matmul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class _Sdpa(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


class _SelfAttention(nn.Module):
    def __init__(self, embed_dim: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(embed_dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


class _ChannelsLastNorm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1))


class _LayerScale(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels, 1, 1), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * x


def _spec(
    required: tuple[str, ...],
    shapes: Callable[[Params, int], list[tuple[int, ...]]],
    make: Callable[[Params], nn.Module],
    count: Callable[[Params, int], tuple[str, int, int, int]],
    optional: dict[str, bool] | None = None,
) -> LayerSpec:
    """An entry from its input shapes, its module and ``count -> (kind, macs, elements, kernels)``.

    ``elements`` is every tensor element read or written, parameters included; bytes are elements times
    the element size.
    """

    def build(p: Params, batch: int) -> Built:
        return make(p), tuple(torch.randn(shape) for shape in shapes(p, batch))

    def counts(p: Params, batch: int, nbytes: int) -> LayerCounts:
        kind, macs, elements, kernels = count(p, batch)
        return LayerCounts(kind, macs, elements * nbytes, kernels, shapes(p, batch)[0])

    return LayerSpec(required, dict(optional or {}), build, counts)


def _linear_tokens(p: Params, batch: int) -> tuple[str, int, int, int]:
    rows, fin, fout = batch * p["tokens"], p["in_features"], p["out_features"]
    weights = fin * fout + (fout if p["bias"] else 0)
    return "matmul", rows * fin * fout, rows * (fin + fout) + weights, 0


def _matmul(p: Params, batch: int) -> tuple[str, int, int, int]:
    n, m, k, cols = batch * p["heads"], p["m"], p["k"], p["n"]
    return "matmul", n * m * cols * k, n * (m * k + k * cols + m * cols), 0


def _sdpa(p: Params, batch: int) -> tuple[str, int, int, int]:
    rows, tokens, dim = batch * p["heads"] * p["tokens"], p["tokens"], p["head_dim"]
    return "attention", rows * tokens * 2 * dim, 4 * rows * dim, 0


def _mha(p: Params, batch: int) -> tuple[str, int, int, int]:
    e, t = p["embed_dim"], p["tokens"]
    macs = batch * (4 * t * e * e + 2 * t * t * e)  # q, k, v and output projections, scores, weighted sum
    return "attention", macs, 2 * batch * t * e + 4 * e * e + 4 * e, 0


def _tokens_norm(p: Params, batch: int) -> tuple[str, int, int, int]:
    return "norm", 0, 2 * batch * p["tokens"] * p["channels"] + 2 * p["channels"], 0


def _image_norm(p: Params, batch: int) -> tuple[str, int, int, int]:
    return "norm", 0, 2 * batch * p["channels"] * p["spatial"] ** 2 + 2 * p["channels"], 0


def _patchify(p: Params, batch: int) -> tuple[str, int, int, int]:
    out = p["spatial"] // p["patch"]
    per_kernel = p["in_channels"] * p["patch"] ** 2
    weights = p["kernels"] * per_kernel + (p["kernels"] if p["bias"] else 0)
    elements = batch * (p["in_channels"] * p["spatial"] ** 2 + p["kernels"] * out * out) + weights
    return "conv", batch * p["kernels"] * out * out * per_kernel, elements, p["kernels"]


def _image(p: Params, batch: int, channels_key: str = "channels") -> tuple[int, int, int, int]:
    return (batch, p[channels_key], p["spatial"], p["spatial"])


TRANSFORMER_LAYERS: dict[str, LayerSpec] = {
    "linear_tokens": _spec(
        ("tokens", "in_features", "out_features"),
        lambda p, b: [(b, p["tokens"], p["in_features"])],
        lambda p: nn.Linear(p["in_features"], p["out_features"], bias=p["bias"]),
        _linear_tokens,
        {"bias": True},
    ),
    "matmul": _spec(
        ("heads", "m", "k", "n"),
        lambda p, b: [(b, p["heads"], p["m"], p["k"]), (b, p["heads"], p["k"], p["n"])],
        lambda p: _Matmul(),
        _matmul,
    ),
    "sdpa": _spec(
        ("heads", "tokens", "head_dim"),
        lambda p, b: [(b, p["heads"], p["tokens"], p["head_dim"])] * 3,
        lambda p: _Sdpa(),
        _sdpa,
    ),
    "mha": _spec(
        ("embed_dim", "heads", "tokens"),
        lambda p, b: [(b, p["tokens"], p["embed_dim"])],
        lambda p: _SelfAttention(p["embed_dim"], p["heads"]),
        _mha,
    ),
    "layernorm": _spec(
        ("tokens", "channels"),
        lambda p, b: [(b, p["tokens"], p["channels"])],
        lambda p: nn.LayerNorm(p["channels"]),
        _tokens_norm,
    ),
    "layernorm2d": _spec(
        ("channels", "spatial"),
        lambda p, b: [_image(p, b)],
        lambda p: _ChannelsLastNorm(p["channels"]),
        _image_norm,
    ),
    "softmax": _spec(
        ("heads", "tokens"),
        lambda p, b: [(b, p["heads"], p["tokens"], p["tokens"])],
        lambda p: nn.Softmax(dim=-1),
        lambda p, b: ("softmax", 0, 2 * b * p["heads"] * p["tokens"] ** 2, 0),
    ),
    "gelu": _spec(
        ("tokens", "features"),
        lambda p, b: [(b, p["tokens"], p["features"])],
        lambda p: nn.GELU(),
        lambda p, b: ("act", 0, 2 * b * p["tokens"] * p["features"], 0),
    ),
    "layerscale": _spec(
        ("channels", "spatial"),
        lambda p, b: [_image(p, b)],
        lambda p: _LayerScale(p["channels"]),
        lambda p, b: ("mul", 0, 2 * b * p["channels"] * p["spatial"] ** 2 + p["channels"], 0),
    ),
    "patchify": _spec(
        ("in_channels", "kernels", "patch", "spatial"),
        lambda p, b: [_image(p, b, "in_channels")],
        lambda p: nn.Conv2d(p["in_channels"], p["kernels"], p["patch"], stride=p["patch"], bias=p["bias"]),
        _patchify,
        {"bias": True},
    ),
}
