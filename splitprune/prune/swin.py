"""torchvision Swin for torch-pruning: pruners for window attention and patch merging, and tracing proxies.

torch-pruning cannot follow torchvision's ``shifted_window_attention`` (pad, roll, window partition,
a q/k/v reshape into heads) nor ``PatchMerging`` (four strided slices concatenated on channels): its
dependency search does not finish on ``swin_t``. Both modules are therefore pruned as units, with
customised pruners handed to torch-pruning's public ``customized_pruners``:

- :class:`WindowAttentionPruner`: the block width ``C`` is the attention's input and output; a
  channel removes its q, k and v rows of ``qkv`` (``C`` apart), its ``qkv`` column and its row and
  column of ``proj``. The head count and the relative-position bias (one column per head) stay; the
  head dimension ``C / num_heads`` shrinks, so the width is pruned in head slots (see
  :mod:`.groups`).
- :class:`PatchMergingPruner`: an input channel removes its four columns of ``reduction`` and of
  the 4C-wide norm; an output channel a row of ``reduction``.

While torch-pruning builds its graph, :func:`tracing_proxies` swaps both modules' ``forward`` for a
proxy with the same input and output shapes and a trivial autograd path (attention: identity;
patch merging: 2x2 pooling and a linear map), so that the graph links the previous layers to the
module and the module to the next ones and nothing inside it. The real forwards come back at exit.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torchvision.models.swin_transformer import PatchMerging, ShiftedWindowAttention

__all__ = [
    "PatchMergingPruner",
    "WindowAttentionPruner",
    "attention_norms",
    "is_swin_unit",
    "is_window_attention",
    "tracing_proxies",
]


def is_window_attention(module: Any) -> bool:
    """True for torchvision's (v1) shifted window attention."""
    return type(module) is ShiftedWindowAttention


def is_swin_unit(module: Any) -> bool:
    """True for the Swin modules pruned as units (window attention, patch merging)."""
    return is_window_attention(module) or type(module) is PatchMerging


def _keep(size: int, idxs: Sequence[int], device: torch.device) -> torch.Tensor:
    drop = set(int(i) for i in idxs)
    return torch.tensor([i for i in range(size) if i not in drop], dtype=torch.long, device=device)


def _select(param: Any, keep: torch.Tensor, dim: int) -> Any:
    if param is None:
        return None
    return nn.Parameter(torch.index_select(param.data, dim, keep), requires_grad=param.requires_grad)


def _prune_linear(linear: Any, rows: torch.Tensor | None, cols: torch.Tensor | None) -> None:
    if rows is not None:
        linear.weight = _select(linear.weight, rows, 0)
        linear.bias = _select(linear.bias, rows, 0)
        linear.out_features = len(rows)
    if cols is not None:
        linear.weight = _select(linear.weight, cols, 1)
        linear.in_features = len(cols)


class WindowAttentionPruner(tp.pruner.function.BasePruningFunc):
    """Prunes the width ``C`` of a ``ShiftedWindowAttention`` (input and output together)."""

    TARGET_MODULES = ShiftedWindowAttention

    def prune_out_channels(self, layer: Any, idxs: Sequence[int]) -> Any:
        """Remove channels ``idxs`` of the block width from q, k, v, the qkv input and proj."""
        width = int(layer.qkv.in_features)
        device = layer.qkv.weight.device
        keep = _keep(width, idxs, device)
        rows = torch.cat([keep + k * width for k in range(3)])
        _prune_linear(layer.qkv, rows, keep)
        _prune_linear(layer.proj, keep, keep)
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: Any) -> int:
        """Block width."""
        return int(layer.qkv.in_features)

    def get_in_channels(self, layer: Any) -> int:
        """Block width."""
        return int(layer.qkv.in_features)


class PatchMergingPruner(tp.pruner.function.BasePruningFunc):
    """Prunes ``PatchMerging``: input channels (x4 after the concatenation) and output channels."""

    TARGET_MODULES = PatchMerging

    def prune_out_channels(self, layer: Any, idxs: Sequence[int]) -> Any:
        """Remove output channels ``idxs`` (rows of ``reduction``)."""
        keep = _keep(int(layer.reduction.out_features), idxs, layer.reduction.weight.device)
        _prune_linear(layer.reduction, keep, None)
        return layer

    def prune_in_channels(self, layer: Any, idxs: Sequence[int]) -> Any:
        """Remove input channels ``idxs`` from all four concatenated slices (norm and reduction)."""
        width = int(layer.reduction.in_features) // 4
        keep = _keep(width, idxs, layer.reduction.weight.device)
        cols = torch.cat([keep + k * width for k in range(4)])
        _prune_linear(layer.reduction, None, cols)
        norm = layer.norm
        norm.weight = _select(norm.weight, cols, 0)
        norm.bias = _select(norm.bias, cols, 0)
        norm.normalized_shape = (len(cols),)
        layer.dim = len(keep)
        return layer

    def get_out_channels(self, layer: Any) -> int:
        """Output width (2C)."""
        return int(layer.reduction.out_features)

    def get_in_channels(self, layer: Any) -> int:
        """Input width (C)."""
        return int(layer.reduction.in_features) // 4


def _attention_proxy(self: Any, x: torch.Tensor) -> torch.Tensor:
    return x.clone()


def _merging_proxy(self: Any, x: torch.Tensor) -> torch.Tensor:
    width = int(self.reduction.in_features) // 4
    pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), 2, ceil_mode=True).permute(0, 2, 3, 1)
    return F.linear(pooled, self.reduction.weight.detach()[:, :width])


@contextlib.contextmanager
def tracing_proxies(model: nn.Module) -> Iterator[None]:
    """Swap Swin attention and patch merging forwards for shape-true proxies (see the docstring)."""
    patched = []
    try:
        for module in model.modules():
            if is_window_attention(module):
                module.forward = types.MethodType(_attention_proxy, module)  # type: ignore[method-assign]
                patched.append(module)
            elif type(module) is PatchMerging:
                module.forward = types.MethodType(_merging_proxy, module)  # type: ignore[method-assign]
                patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward


def attention_norms(layer: Any, kind: str) -> torch.Tensor | None:
    """Per-channel squared weight norms of a pruned Swin unit (for magnitude saliency), else None.

    ``kind`` is ``out`` or ``in`` (which side of the unit the group prunes).
    """
    if is_window_attention(layer):
        width = int(layer.qkv.in_features)
        w_in, w_out = layer.qkv.weight.detach(), layer.proj.weight.detach()
        rows = w_in.pow(2).sum(1).view(3, width).sum(0)
        return rows + w_in.pow(2).sum(0) + w_out.pow(2).sum(1) + w_out.pow(2).sum(0)
    if type(layer) is PatchMerging:
        weight = layer.reduction.weight.detach()
        if kind == "out":
            return weight.pow(2).sum(1)
        return weight.pow(2).sum(0).view(4, -1).sum(0)
    return None
