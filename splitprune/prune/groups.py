"""torch-pruning's dependency graph with its traps handled, and the coupled groups it yields.

Traps handled here:

- Frozen parameters: torch-pruning discovers layers through autograd, so layers whose parameters do
  not require grad (or a forward under ``torch.no_grad``) are invisible and silently left unpruned.
  The graph is built under ``torch.enable_grad`` with every parameter temporarily trainable.
- ``FrozenBatchNorm2d`` keeps its statistics in buffers that torch-pruning does not know; a
  customised pruner slices them with the channels.
- Channel permutations break torch-pruning's index bookkeeping: a permute or transpose that reorders
  the parts of a split axis (channel shuffle), ``channel_shuffle``/``pixel_shuffle`` and a ``roll``
  over the channel axis are refused with one line before pruning. Permutes that move whole axes
  (NCHW <-> NHWC in ConvNeXt, patches -> tokens in ViT) keep every channel's identity and are allowed.
- Attention: ``nn.MultiheadAttention`` (torchvision's ViT) is pruned by torch-pruning's own pruner,
  which shrinks the embedding width, and so every head's dimension, by the same indices in q, k, v
  and the output projection. Its head dimension must stay whole, so its group is pruned in *slots*:
  one slot is the same position in every head (``num_heads`` channels), as torch-pruning's
  ``num_heads`` / ``out_channel_groups`` grouping does. torchvision's Swin (v1) window attention and
  patch merging are pruned as units by the customised pruners of :mod:`.swin`, the attention in
  slots likewise. Other attention (functional ``scaled_dot_product_attention`` in a custom module,
  Swin v2) is refused, naming the op.
- Modules that cache a width used in ``forward`` (torchvision ``VisionTransformer.hidden_dim``) are
  re-synchronised after every pruning step and after a replay (:func:`sync_widths`).
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
from torchvision.models.swin_transformer import PatchMerging, ShiftedWindowAttention
from torchvision.ops import FrozenBatchNorm2d

from ..errors import SplitpruneError
from ..graph import LayerGraph
from .swin import PatchMergingPruner, WindowAttentionPruner, is_window_attention, tracing_proxies

__all__ = [
    "GroupSpec",
    "UnsupportedModelError",
    "autograd_visible",
    "build_dependency",
    "check_supported",
    "group_spec",
    "layer_module",
    "layers_within",
    "module_width",
    "output_layers",
    "sync_widths",
]

SHUFFLING_TARGETS = frozenset(
    {"channel_shuffle", "pixel_shuffle", "pixel_unshuffle", "native_channel_shuffle"}
)
SHUFFLING_MODULES: tuple[type[nn.Module], ...] = (nn.ChannelShuffle, nn.PixelShuffle, nn.PixelUnshuffle)
PERMUTING_TARGETS = frozenset({"transpose", "permute", "swapaxes", "swapdims", "movedim"})
METADATA_TARGETS = frozenset(
    {"new_full", "new_zeros", "new_ones", "new_empty", "zeros_like", "ones_like", "empty_like", "full_like",
     "size", "sym_size", "dim"}
)  # fmt: skip
"""Ops that read only their input's shape, dtype and device."""


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


CUSTOM_PRUNERS: dict[Any, tp.pruner.function.BasePruningFunc] = {
    FrozenBatchNorm2d: _FrozenBatchNormPruner(),
    ShiftedWindowAttention: WindowAttentionPruner(),
    PatchMerging: PatchMergingPruner(),
}


def check_supported(graph: LayerGraph, *, model: nn.Module | None = None, kept: Sequence[str] = ()) -> None:
    """Raise :class:`UnsupportedModelError` for attention and permutations torch-pruning cannot track.

    Supported: convolutions, linear layers (on vectors or token sequences), norms, whole-axis
    permutes and ``nn.MultiheadAttention`` with one shared q/k/v width. Refused (one line naming the
    op): other attention ops and anything that shuffles channels (see the module docstring).
    Swin's window attention (a function call inside the module) is recognised when ``model``, the
    traced model, is given. Ops inside the modules named in ``kept`` (whose layers keep their output
    channels, such as YOLO's Detect head and its DFL) are not checked: nothing they permute is pruned.
    """
    fx_nodes = {node.name: node for node in graph.gm.graph.nodes}
    owner = model if model is not None else graph.gm
    inside_kept = {n for n in graph.order if any(_within(graph.nx.nodes[n]["module"], k) for k in kept)}
    for name in graph.order:
        attrs = graph.nx.nodes[name]
        if attrs["kind"] != "attention" or name in inside_kept:
            continue
        module = layer_module(attrs, owner)
        if isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim:
            continue
        if module is None and model is not None and attrs["module"]:
            if is_window_attention(model.get_submodule(attrs["module"])):
                continue
        what = type(module).__name__ if module is not None else _op_name(attrs)
        where = f" in '{attrs['module']}'" if attrs["module"] else ""
        raise UnsupportedModelError(
            f"{graph.name} has an attention op splitprune cannot prune ({what} at node '{name}'{where}); "
            "supported are nn.MultiheadAttention (torchvision ViT), torchvision Swin (v1) window attention, "
            "linear and conv layers"
        )
    for name in graph.order:
        if name in inside_kept:
            continue
        attrs = graph.nx.nodes[name]
        module = layer_module(attrs, owner)
        target = _op_name(attrs)
        reason = ""
        if isinstance(module, SHUFFLING_MODULES) or (module is None and target in SHUFFLING_TARGETS):
            reason = "shuffles channels"
        elif module is None and target in PERMUTING_TARGETS and _reorders_split_axis(graph, fx_nodes, name):
            reason = "reorders the parts of a split axis, as channel shuffle does"
        elif module is None and target == "roll" and _rolls_channels(fx_nodes.get(name)):
            reason = "rolls along the channel axis"
        if reason:
            where = f" in '{attrs['module']}'" if attrs["module"] else ""
            raise UnsupportedModelError(
                f"{graph.name} permutes tensor dimensions ({target} at node '{name}'{where} {reason}); "
                "torch-pruning cannot track channels through it, so splitprune refuses to prune this model"
            )


def layer_module(attrs: dict[str, Any], model: nn.Module) -> nn.Module | None:
    """The leaf module whose forward a node is, or None for functions and methods.

    fx graphs call leaf modules (the node's target is the module's name); ATen graphs (torch.export)
    run a conv or linear module's one op inside it, so its innermost module is the layer.
    """
    name = attrs["module"]
    if not name or (attrs["target"] != name and attrs["kind"] not in ("conv", "linear", "matmul")):
        return None
    try:
        module = model.get_submodule(name)
    except AttributeError:  # pragma: no cover - every module call names a submodule
        return None
    if attrs["target"] == name or isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
        return module
    return None


def _op_name(attrs: dict[str, Any]) -> str:
    """The op a function or method node runs: ``transpose.int`` (ATen) is ``transpose``."""
    return str(attrs["target"]).split(".", 1)[0]


def _within(module: str, owner: str) -> bool:
    return module == owner or module.startswith(owner + ".")


def _permutation(node: Any, rank: int) -> list[int] | None:
    """The output-to-input axis order of a permute/transpose fx node, or None if unknown."""
    args = [a for a in node.args[1:]]
    dims: list[int]
    target = str(node.target).rsplit(".", 1)[-1]
    if target == "permute":
        raw = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
        raw = raw or node.kwargs.get("dims", ())
        if not all(isinstance(d, int) for d in raw) or len(raw) != rank:
            return None
        return [d % rank for d in raw]
    if target in ("transpose", "swapaxes", "swapdims"):
        pair = args or [node.kwargs.get("dim0"), node.kwargs.get("dim1")]
        if len(pair) != 2 or not all(isinstance(d, int) for d in pair):
            return None
        dims = list(range(rank))
        a, b = pair[0] % rank, pair[1] % rank
        dims[a], dims[b] = dims[b], dims[a]
        return dims
    return None  # movedim and friends: treated as reordering (conservative)


def _split_groups(before: tuple[int, ...], after: tuple[int, ...]) -> list[list[int]]:
    """For a view ``before -> after``, the output axes each split input axis became (size-1 axes aside)."""
    groups: list[list[int]] = []
    j = 0
    for size in before:
        if size == 1:
            continue
        axes, product = [], 1
        while j < len(after) and product < size:
            if after[j] != 1:
                axes.append(j)
                product *= after[j]
            j += 1
        if product != size:
            return []  # a merge, or no clean correspondence: nothing is split
        groups.append(axes)
    return [axes for axes in groups if len(axes) > 1]


def _reorders_split_axis(graph: LayerGraph, fx_nodes: dict[str, Any], name: str) -> bool:
    """True when a permute/transpose reorders the pieces of an axis that a view just split."""
    node = fx_nodes.get(name)
    preds = list(graph.nx.predecessors(name))
    if node is None or not preds:
        return True
    source = graph.nx.nodes[preds[0]]
    if source["kind"] != "reshape" or not source["input_shapes"] or not source["output_shapes"]:
        return False
    before, after = tuple(source["input_shapes"][0]), tuple(source["output_shapes"][0])
    order = _permutation(node, len(after))
    if order is None:
        return True
    for axes in _split_groups(before, after):
        positions = [order.index(a) for a in axes]
        if positions != sorted(positions):
            return True
    return False


def _rolls_channels(node: Any) -> bool:
    """A ``roll`` with no dims (flattened) or over dim 1 may move channels; rolls over others do not."""
    if node is None:
        return True
    dims = node.args[2] if len(node.args) > 2 else node.kwargs.get("dims")
    if dims is None:
        return True
    dims = [dims] if isinstance(dims, int) else list(dims)
    return 1 in dims


def output_layers(graph: LayerGraph, model: nn.Module | None = None) -> list[str]:
    """Conv/linear modules whose outputs reach the model output without another conv/linear.

    ``model`` is the traced model (needed for ATen graphs, whose ``gm`` holds no layer modules).
    """
    owner = model if model is not None else graph.gm
    found: list[str] = []
    metadata_only = {n for n in graph.order if _op_name(graph.nx.nodes[n]) in METADATA_TARGETS}
    seen: set[str] = set()
    stack = list(graph.nx.predecessors(graph.output))
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        attrs = graph.nx.nodes[name]
        if attrs["kind"] in ("conv", "linear", "matmul") and layer_module(attrs, owner) is not None:
            if attrs["module"] not in found:
                found.append(attrs["module"])
            continue
        if name not in metadata_only:  # YOLO's anchors read a feature map's shape, not its values
            stack.extend(graph.nx.predecessors(name))
    return found


def layers_within(model: nn.Module, names: list[str]) -> list[nn.Module]:
    """The modules named, and the conv and linear layers inside them.

    torch-pruning ignores layers, not blocks: a kept block (YOLO's DFL, an ``Attention``) is passed as
    its layers so none of them roots a group.
    """
    found: dict[int, nn.Module] = {}
    for name in names:
        module = model.get_submodule(name)
        found.setdefault(id(module), module)
        for layer in module.modules():
            if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
                found.setdefault(id(layer), layer)
    return list(found.values())


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
    with autograd_visible(model), warnings.catch_warnings(), tracing_proxies(model):
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


def module_width(module: nn.Module) -> int:
    """Output width of a prunable module: conv out channels, linear out features, attention embedding."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return int(module.out_channels)
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    if isinstance(module, nn.MultiheadAttention):
        return int(module.embed_dim)
    return 0


def _sync_vision_transformer(module: Any) -> None:
    module.hidden_dim = int(module.conv_proj.out_channels)


def _width_syncs() -> dict[type[nn.Module], Any]:
    from torchvision.models.vision_transformer import VisionTransformer

    return {VisionTransformer: _sync_vision_transformer}


def sync_widths(model: nn.Module) -> None:
    """Re-synchronise widths that modules cache for ``forward`` with their pruned layers."""
    syncs = _width_syncs()
    for module in model.modules():
        sync = syncs.get(type(module))
        if sync is not None:
            sync(module)


@dataclass(frozen=True)
class GroupSpec:
    """One coupled group as the pruner sees it.

    Attributes:
        root: Name of the group's root module (its output channels are the group's channels).
        channels: Current channel count of the group.
        members: ``(module name, out channels lost per root channel, in channels lost per root
            channel)`` for every conv, linear and multi-head attention member.
        out_modules: Modules whose outputs shrink (the guards apply to these).
        prunable: False when the group holds a grouped (non-depthwise) convolution.
        channel_groups: Channels per removable unit: ``num_heads`` when the group runs through a
            multi-head attention (a unit is the same position in every head), else 1.
    """

    root: str
    channels: int
    members: tuple[tuple[str, int, int], ...]
    out_modules: tuple[str, ...]
    prunable: bool
    channel_groups: int = 1

    @property
    def units(self) -> int:
        """Removable units (channels / channel_groups)."""
        return self.channels // self.channel_groups


def group_spec(group: Any, dg: tp.DependencyGraph, names: dict[nn.Module, str]) -> GroupSpec:
    """Summarise a torch-pruning group (built with the full index range)."""
    root_len = max(len(group[0].idxs), 1)
    members: dict[str, list[int]] = {}
    out_modules: list[str] = []
    prunable = True
    channel_groups = 1
    for dep, idxs in group:
        module = dep.target.module
        if isinstance(module, nn.MultiheadAttention):
            name = names[module]
            members[name] = [1, 1]
            out_modules.append(name)
            channel_groups = max(channel_groups, int(module.num_heads))
            continue
        if is_window_attention(module):  # q, k, v rows of qkv and both sides of proj
            name = names[module]
            members[f"{name}.qkv"] = [3, 1]
            members[f"{name}.proj"] = [1, 1]
            out_modules.append(f"{name}.proj")
            channel_groups = max(channel_groups, int(module.num_heads))
            continue
        if isinstance(module, PatchMerging):
            name = f"{names[module]}.reduction"
            entry = members.setdefault(name, [0, 0])
            if dg.is_out_channel_pruning_fn(dep.handler):
                entry[0] = 1
                out_modules.append(name)
            else:
                entry[1] = 4
            continue
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
    channels = len(group[0].idxs)
    if channels % channel_groups:
        prunable = False  # pragma: no cover - an embedding width always splits into whole heads
    return GroupSpec(
        root=names[group[0].dep.target.module],
        channels=channels,
        members=tuple((name, out, inp) for name, (out, inp) in members.items()),
        out_modules=tuple(dict.fromkeys(out_modules)),
        prunable=prunable,
        channel_groups=channel_groups,
    )
