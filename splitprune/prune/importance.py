"""Channel importance: an energy-aware torch-pruning ``Importance`` and the baselines.

The energy-aware score of a channel is its base saliency divided by the energy that removing it saves.
Saliency is torch-pruning's group magnitude (L2 over every coupled layer, normalised to mean 1 in the
group) or, with data, its first-order Taylor score. The saving is the board model's cost difference
over every member of the coupled group: the layers whose outputs lose the channel, the layers whose
inputs lose it and the normalisation, activation and pooling layers in between. Kernels run in tiles
of ``g`` (the board's kernel granularity), so one channel of a conv whose width is a multiple of ``g``
saves almost nothing on its own; the saving is therefore amortised over the channels down to the next
lower multiple of ``g``, which is what a tile-aligned removal actually saves per channel.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner import function as tpf

from .swin import attention_norms, is_swin_unit

__all__ = [
    "IMPORTANCES",
    "CachedGroupMagnitude",
    "EnergyAwareImportance",
    "ImportanceName",
    "base_importance",
]

ImportanceName = Literal["energy", "magnitude", "taylor", "random"]
IMPORTANCES: tuple[str, ...] = ("energy", "magnitude", "taylor", "random")

GroupCost = Callable[[Any], float]
"""Maps a torch-pruning group to the cost (J or s) one of its channels saves when removed."""


def base_importance(name: str) -> tp.importance.Importance:
    """The torch-pruning importance behind ``name`` (``magnitude``, ``taylor`` or ``random``)."""
    if name == "magnitude":
        return CachedGroupMagnitude()
    if name == "taylor":
        return tp.importance.GroupTaylorImportance(group_reduction="mean", normalizer="mean")
    if name == "random":
        return tp.importance.RandomImportance()
    raise ValueError(f"no base importance {name!r}")


class EnergyAwareImportance(tp.importance.Importance):
    """Saliency per joule: ``base(group) / saved_per_channel(group)``.

    Usable as any torch-pruning importance, e.g. in ``tp.pruner.MetaPruner``; channels with the
    lowest score are pruned first.

    Args:
        saved_per_channel: Cost saved per removed channel of a group, in the metric's unit. Must be
            recomputed by the caller when channel counts change (see :meth:`set_cost`).
        base: The saliency; default group L2 magnitude.
        floor: Savings below this (J or s) count as this, so free channels are not scored infinite.
    """

    def __init__(
        self,
        saved_per_channel: GroupCost,
        base: tp.importance.Importance | None = None,
        *,
        floor: float = 1e-12,
    ) -> None:
        self.saved_per_channel = saved_per_channel
        self.base = base if base is not None else base_importance("magnitude")
        self.floor = floor

    def set_cost(self, saved_per_channel: GroupCost) -> None:
        """Replace the saving function (after the model's channel counts changed)."""
        self.saved_per_channel = saved_per_channel

    @torch.no_grad()
    def __call__(self, group: Any) -> torch.Tensor | None:
        """Per-channel score of ``group`` (1-D, one entry per channel of the group's root)."""
        saliency = self.base(group)
        if saliency is None:
            return None
        saved = max(float(self.saved_per_channel(group)), self.floor)
        return saliency / saved


_KINDS = {
    tpf.prune_conv_out_channels: "out",
    tpf.prune_linear_out_channels: "out",
    tpf.prune_conv_in_channels: "in",
    tpf.prune_linear_in_channels: "in",
    tpf.prune_batchnorm_out_channels: "bn",
    tpf.prune_layernorm_out_channels: "bn",
    tpf.prune_multihead_attention_out_channels: "mha",
}


class CachedGroupMagnitude(tp.importance.Importance):
    """torch-pruning's default group importance, computed once per weight tensor.

    Same scores as ``tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean",
    normalizer="mean")``: the squared L2 norm of every channel's weights in every conv, linear,
    batch-norm and layer-norm member, averaged over members and divided by the group mean. A
    multi-head attention member (``nn.MultiheadAttention`` or Swin's window attention) contributes,
    per embedding channel, the squared norms of its q, k and v projection rows and columns and of its
    output projection's row and column; Swin's patch merging its reduction rows or columns. Each
    layer's per-channel norms are cached until its weight tensor is replaced (pruned) or modified
    (trained), so a step that prunes a few groups recomputes only those (VGG's 100-M-weight
    classifier made the uncached version the slowest part of the loop).
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str], tuple[Any, int, torch.Tensor]] = {}

    def _local(self, layer: Any, kind: str) -> torch.Tensor:
        weight = _weight_of(layer, kind)
        assert isinstance(weight, torch.Tensor)
        key = (id(weight), kind)
        hit = self._cache.get(key)
        if hit is not None and hit[0]() is weight and hit[1] == weight._version:
            return hit[2]
        data = weight.detach()
        transposed = bool(getattr(layer, "transposed", False))
        if kind == "bn":
            value = data.pow(2)
        elif kind == "mha":
            value = _attention_channel_norms(layer)
        elif kind in ("swin_in", "swin_out"):
            norms = attention_norms(layer, kind.removeprefix("swin_"))
            assert norms is not None
            value = norms
        else:
            channel_dim = int(transposed) if kind == "out" else 1 - int(transposed)
            dims = [d for d in range(data.dim()) if d != channel_dim]
            value = torch.linalg.vector_norm(data, dim=dims).pow(2)
            groups = getattr(layer, "groups", 1)
            if kind == "in" and isinstance(layer, nn.modules.conv._ConvNd):
                if groups not in (1, layer.in_channels):
                    value = value.repeat(groups)
        value = value.float().cpu()
        self._cache[key] = (weakref.ref(weight), weight._version, value)
        return value

    @torch.no_grad()
    def __call__(self, group: Any) -> torch.Tensor | None:
        """Per-channel score of ``group`` (mean 1), or None when no member has weights."""
        total = torch.zeros(len(group[0].idxs))
        members = 0
        for i, (dep, idxs) in enumerate(group):
            kind = _KINDS.get(dep.handler)
            layer = dep.target.module
            if kind is None and is_swin_unit(layer):  # pruned as a unit (see .swin)
                kind = (
                    "swin_in" if getattr(dep.handler, "__name__", "") == "prune_in_channels" else "swin_out"
                )
            root_idxs = group[i].root_idxs
            if kind is None or not isinstance(layer, nn.Module) or any(r is None for r in root_idxs):
                continue
            affine = getattr(layer, "affine", False) or getattr(layer, "elementwise_affine", False)
            if kind == "bn" and not (affine and isinstance(getattr(layer, "weight", None), torch.Tensor)):
                continue
            local = self._local(layer, kind)[torch.as_tensor(idxs, dtype=torch.long)]
            total.scatter_add_(0, torch.as_tensor(root_idxs, dtype=torch.long), local)
            members += 1
        if members == 0:
            return None
        total /= members
        return total / total.mean().clamp_min(1e-30)


def _weight_of(layer: Any, kind: str) -> Any:
    """The tensor whose identity and version key the cache for ``layer``."""
    if kind == "mha":
        return layer.in_proj_weight
    if kind.startswith("swin_"):
        return layer.qkv.weight if hasattr(layer, "qkv") else layer.reduction.weight
    return layer.weight


def _attention_channel_norms(mha: nn.MultiheadAttention) -> torch.Tensor:
    """Per embedding channel: squared norms of every q/k/v/output projection row and column it owns."""
    e = int(mha.embed_dim)
    w_in = mha.in_proj_weight.detach()
    w_out = mha.out_proj.weight.detach()
    rows = w_in.pow(2).sum(1).view(3, e).sum(0)
    return rows + w_in.pow(2).sum(0) + w_out.pow(2).sum(1) + w_out.pow(2).sum(0)
