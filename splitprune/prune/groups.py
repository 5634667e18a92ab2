"""torch-pruning's dependency graph with its traps handled, and the coupled groups it yields.

Traps handled here:

- Frozen parameters: torch-pruning discovers layers through autograd, so layers whose parameters do
  not require grad (or a forward under ``torch.no_grad``) are invisible and silently left unpruned.
  The graph is built under ``torch.enable_grad`` with every parameter temporarily trainable.
- ``FrozenBatchNorm2d`` keeps its statistics in buffers that torch-pruning does not know; a
  customised pruner slices them with the channels.
- Channel permutations (channel shuffle, window attention's roll and permute) and attention layers
  break torch-pruning's index bookkeeping; such models are refused with one line before pruning.
- ``build_dependency`` switches the model to eval mode; the training flag is restored.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from ..errors import SplitpruneError
from ..graph import LayerGraph

__all__ = [
    "GroupSpec",
    "UnsupportedModelError",
    "autograd_visible",
    "build_dependency",
    "check_supported",
    "group_spec",
    "output_layers",
]

PERMUTING_TARGETS = frozenset(
    {"transpose", "permute", "roll", "channel_shuffle", "pixel_shuffle", "pixel_unshuffle", "swapaxes"}
)
UNSUPPORTED_KINDS = frozenset({"attention"})


class UnsupportedModelError(SplitpruneError):
    """The model has a structure torch-pruning cannot prune safely."""


class _FrozenBatchNormPruner(tp.pruner.function.BasePruningFunc):
    """Prunes ``torchvision.ops.FrozenBatchNorm2d`` (its affine terms and statistics are buffers)."""

    TARGET_MODULES = FrozenBatchNorm2d

    def prune_out_channels(self, layer: Any, idxs: Sequence[int]) -> Any:
        keep = sorted(set(range(layer.weight.shape[0])) - set(int(i) for i in idxs))
        index = torch.tensor(keep, dtype=torch.long, device=layer.weight.device)
        for name in ("weight", "bias", "running_mean", "running_var"):
            setattr(layer, name, torch.index_select(getattr(layer, name), 0, index))
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: Any) -> int:
        return int(layer.weight.shape[0])

    def get_in_channels(self, layer: Any) -> int:
        return int(layer.weight.shape[0])


CUSTOM_PRUNERS: dict[Any, tp.pruner.function.BasePruningFunc] = {FrozenBatchNorm2d: _FrozenBatchNormPruner()}


def check_supported(graph: LayerGraph) -> None:
    """Raise :class:`UnsupportedModelError` for channel permutations and attention layers."""
    for name in graph.order:
        attrs = graph.nx.nodes[name]
        if attrs["kind"] in UNSUPPORTED_KINDS:
            raise UnsupportedModelError(
                f"{graph.name} has an attention layer ('{attrs['module'] or name}'); splitprune prunes "
                "CNN channels only and cannot prune attention models such as Swin or ViT"
            )
        is_module_call = attrs["module"] and attrs["target"] == attrs["module"]
        if not is_module_call and attrs["target"] in PERMUTING_TARGETS:
            where = f" in '{attrs['module']}'" if attrs["module"] else ""
            raise UnsupportedModelError(
                f"{graph.name} permutes tensor dimensions ({attrs['target']} at node '{name}'{where}, "
                "as channel shuffle and window attention do); torch-pruning cannot track channels "
                "through it, so splitprune refuses to prune this model"
            )


def output_layers(graph: LayerGraph) -> list[str]:
    """Conv/linear modules whose outputs reach the model output without another conv/linear."""
    found: list[str] = []
    seen: set[str] = set()
    stack = list(graph.nx.predecessors(graph.output))
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        attrs = graph.nx.nodes[name]
        if attrs["kind"] in ("conv", "linear", "matmul") and attrs["module"] == attrs["target"]:
            if attrs["module"] not in found:
                found.append(attrs["module"])
            continue
        stack.extend(graph.nx.predecessors(name))
    return found


@contextlib.contextmanager
def autograd_visible(model: nn.Module) -> Iterator[None]:
    """Enable autograd and make every parameter trainable for the block; restore both after."""
    frozen = [p for p in model.parameters() if not p.requires_grad]
    was_training = model.training
    try:
        for p in frozen:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p in frozen:
            p.requires_grad_(False)
        model.train(was_training)


def build_dependency(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> tp.DependencyGraph:
    """Build torch-pruning's dependency graph with the traps above handled.

    Raises:
        UnsupportedModelError: torch-pruning failed on the model (one line, no traceback).
    """
    with autograd_visible(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tp.DependencyGraph().build_dependency(
                model,
                example_inputs=example_inputs,
                customized_pruners=dict(CUSTOM_PRUNERS),
                verbose=False,
            )
        except Exception as exc:  # torch-pruning raises anything from asserts to ZeroDivisionError
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise UnsupportedModelError(
                f"torch-pruning cannot build the dependency graph of {type(model).__name__} "
                f"({type(exc).__name__}{': ' + reason if reason else ''}); this model cannot be pruned"
            ) from None


@dataclass(frozen=True)
class GroupSpec:
    """One coupled group as the pruner sees it.

    Attributes:
        root: Name of the group's root module (its output channels are the group's channels).
        channels: Current channel count of the group.
        members: ``(module name, out channels lost per root channel, in channels lost per root
            channel)`` for every conv/linear member.
        out_modules: Conv/linear modules whose outputs shrink (the guards apply to these).
        prunable: False when the group holds a grouped (non-depthwise) convolution.
    """

    root: str
    channels: int
    members: tuple[tuple[str, int, int], ...]
    out_modules: tuple[str, ...]
    prunable: bool


def group_spec(group: Any, dg: tp.DependencyGraph, names: dict[nn.Module, str]) -> GroupSpec:
    """Summarise a torch-pruning group (built with the full index range)."""
    root_len = max(len(group[0].idxs), 1)
    members: dict[str, list[int]] = {}
    out_modules: list[str] = []
    prunable = True
    for dep, idxs in group:
        module = dep.target.module
        if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            continue
        name = names[module]
        per_root = max(len(idxs) // root_len, 1)
        entry = members.setdefault(name, [0, 0])
        is_out = dg.is_out_channel_pruning_fn(dep.handler)
        depthwise = isinstance(module, nn.modules.conv._ConvNd) and (
            module.groups == module.in_channels and module.groups > 1
        )
        if isinstance(module, nn.modules.conv._ConvNd) and 1 < module.groups < module.in_channels:
            prunable = False
        if is_out or depthwise:
            entry[0] = per_root
            out_modules.append(name)
        if not is_out or depthwise:
            entry[1] = per_root
    return GroupSpec(
        root=names[group[0].dep.target.module],
        channels=len(group[0].idxs),
        members=tuple((name, out, inp) for name, (out, inp) in members.items()),
        out_modules=tuple(dict.fromkeys(out_modules)),
        prunable=prunable,
    )
