"""The budget loop: progressive global channel pruning until the board estimate meets the budget.

Every step (1) re-traces and annotates the model, so the number checked against the budget is always
the board model on the traced, pruned graph; (2) scores every channel of every coupled group; (3)
takes the lowest-scoring chunks of channels across all groups until the step has saved its share
(``step_fraction`` of the baseline) or would end the step inside ``[1 - tolerance, 1] x budget``,
with the savings computed by :class:`~.channels.ChannelModel`; (4) prunes them through
torch-pruning's dependency graph. A chunk is ``round_to`` channels (and the first chunk of a layer
whose width is not a multiple brings it to one), so widths stay on the board's kernel tiles. When no
whole chunk fits between the budget and the tolerance floor, the last steps remove single channels.
The guards (ignored layers, ``min_channels``, ``max_ratio`` against the original width) bound every
chunk, so no layer ever passes them, not even within one step.

Transformers (torchvision ViT, ConvNeXt) go through the same loop: MLP hidden channels are plain
linear groups; the embedding width of a ViT is one group through every ``nn.MultiheadAttention``,
pruned in slots (one position in every head, so heads keep equal, whole dimensions; see
:mod:`.groups`); ConvNeXt's per-stage widths run through depthwise convs, permutes, layer norms and
layer-scale parameters, which torch-pruning prunes along.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..board import BoardProfile
from ..deploy import Deployment
from ..energy import annotate
from ..graph import LayerGraph, trace
from ..pricing import MetricPricer
from .adapters import adapt
from .budget import Budget, BudgetError
from .channels import ChannelModel
from .groups import (
    UnsupportedModelError,
    build_dependency,
    check_supported,
    group_spec,
    layers_within,
    module_width,
    output_layers,
    sync_widths,
)
from .importance import IMPORTANCES
from .result import PruneResult, layer_rows
from .select import Group, Scorer, changes_for, select

__all__ = ["PruneOptions", "prune_to_budget"]

Finetune = Callable[[nn.Module], None]


@dataclass(frozen=True)
class PruneOptions:
    """Knobs of :func:`prune_to_budget` (defaults suit ImageNet-size CNNs).

    Attributes:
        round_to: Keep widths at multiples of this; None uses the board's kernel granularity.
        ignore: Extra module names whose output channels are never pruned.
        ignore_output_layers: Leave the layers that produce the model output (the classifier).
        min_channels: No pruned layer keeps fewer output channels than this.
        max_ratio: No layer loses more than this fraction of its original output channels.
        step_fraction: Share of the baseline estimate removed per step (smaller: more re-scoring).
        tolerance: The result lands in ``[1 - tolerance, 1] x budget``.
        saliency: Base saliency of the ``energy`` importance: ``magnitude`` or ``taylor`` (needs data).
        taylor_batches: Batches of ``data`` whose gradients feed the Taylor scores at each step.
        finetune_every: Call the fine-tune hook after every this many steps (0: only at the end).
        max_steps: Safety stop for the loop.
        seed: Seed for the ``random`` importance.
        prune_embedding: Also prune groups that run through multi-head attention (a ViT's
            embedding width, and with it every head's dimension); False keeps them whole.
    """

    round_to: int | None = None
    ignore: tuple[str, ...] = ()
    ignore_output_layers: bool = True
    min_channels: int = 4
    max_ratio: float = 0.9
    step_fraction: float = 0.025
    tolerance: float = 0.03
    saliency: Literal["magnitude", "taylor"] = "magnitude"
    taylor_batches: int = 2
    finetune_every: int = 0
    max_steps: int = 500
    seed: int = 0
    prune_embedding: bool = True

    def __post_init__(self) -> None:
        if self.round_to is not None and self.round_to < 1:
            raise BudgetError(f"round_to must be at least 1, got {self.round_to}")
        if not 0 < self.max_ratio <= 1:
            raise BudgetError(f"max_ratio must be in (0, 1], got {self.max_ratio}")
        if not 0 < self.tolerance < 1 or not 0 < self.step_fraction <= 1:
            raise BudgetError("tolerance and step_fraction must be in (0, 1)")


def prune_to_budget(
    model: nn.Module,
    example_inputs: torch.Tensor | tuple[torch.Tensor, ...],
    board: BoardProfile | Deployment,
    budget: float | str | Budget,
    *,
    importance: str = "energy",
    options: PruneOptions | None = None,
    finetune: Finetune | None = None,
    data: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    name: str | None = None,
) -> PruneResult:
    """Prune ``model`` in place until its estimate on ``board`` is at or just under ``budget``.

    Args:
        model: A CNN or a supported transformer (torchvision ViT, ConvNeXt; real weights, on the
            device of ``example_inputs``).
        example_inputs: One input batch (or a tuple), used for tracing and torch-pruning.
        board: The deployment (or a board profile, deployed as it is) whose prices define energy
            and latency.
        budget: A fraction of the baseline energy (``0.5``), or a :class:`Budget` / string such as
            ``"0.08J"`` or ``"12ms"``.
        importance: ``energy`` (saliency per joule), ``magnitude``, ``taylor`` or ``random``.
        options: Guards, rounding and loop settings.
        finetune: Called with the model after pruning (and every ``finetune_every`` steps).
        data: Re-iterable ``(inputs, targets)`` batches for Taylor saliency.
        loss_fn: Loss for Taylor saliency (default: cross entropy).
        name: Model name for reports.

    Returns:
        The report; ``result.model`` is ``model``, pruned.

    Raises:
        BudgetError: The budget is malformed or below what the guards allow.
        UnsupportedModelError: torch-pruning cannot prune this model safely.
    """
    board = Deployment.coerce(board).profile
    opts = options or PruneOptions()
    spec = Budget.parse(budget)
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if importance not in IMPORTANCES:
        raise BudgetError(f"unknown importance {importance!r}; choose one of {', '.join(IMPORTANCES)}")
    needs_data = importance == "taylor" or (importance == "energy" and opts.saliency == "taylor")
    if needs_data and data is None:
        raise BudgetError("Taylor saliency needs data: pass data=[(inputs, targets), ...]")
    started = time.perf_counter()
    cost = MetricPricer.of(board, spec.metric)
    round_to = opts.round_to or board.energy_j.conv_kernel_granularity

    original = _estimate(model, inputs, board, name)
    params_before = sum(p.numel() for p in model.parameters())
    adaptation = adapt(model)
    before = _estimate(model, inputs, board, name) if adaptation.rewritten else original
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    check_supported(before, model=model, kept=adaptation.kept)
    baseline = _metric(original, spec.metric)
    target = spec.resolve(baseline)
    ignored = _ignored(model, before, opts, kept=adaptation.kept)
    ignored_modules = layers_within(model, ignored)
    dg = build_dependency(model, inputs)
    names = {module: n for n, module in model.named_modules()}
    init_out = {n: module_width(m) for n, m in model.named_modules() if module_width(m)}
    scorer = Scorer(importance, opts, model, dg, names, data=data, loss_fn=loss_fn)

    graph, value, trajectory, notes = before, _metric(before, spec.metric), [baseline], []
    if adaptation.rewritten:
        change = value / baseline - 1
        notes.append(
            f"{len(adaptation.rewritten)} blocks that split a conv's output in halves were rewritten as two "
            f"convs with the same output (so torch-pruning tracks each half); the board model prices that "
            f"form {abs(change) * 100:.2g} % {'above' if change >= 0 else 'below'} the original"
        )
    if adaptation.kept:
        notes.append(f"output channels kept in {', '.join(adaptation.kept)} (detection head, attention)")
    fine = round_to == 1
    steps = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)
        while value > target:
            if steps >= opts.max_steps:
                raise BudgetError(f"no convergence after {steps} steps; raise step_fraction")
            cmodel = ChannelModel(graph, model, cost)
            fixed = _postprocess(graph, spec.metric)  # priced outside the network: pruning leaves it
            if abs(cmodel.state().total + fixed - _metric(graph, spec.metric)) > 1e-6 * value:
                notes.append("the channel model disagrees with the traced estimate; steps may overshoot")
            groups = _groups(dg, ignored_modules, names, init_out, opts)
            if steps == 0:
                _check_reachable(cmodel, groups, target, spec, opts, fixed)
            scorer.score(groups, cmodel, cost.conv_kernel_granularity)
            lower = target * (1 - 0.9 * opts.tolerance) - fixed
            quota = min(value - target * (1 - 0.5 * opts.tolerance), opts.step_fraction * baseline)
            taken = select(groups, cmodel, 1 if fine else round_to, quota, lower)
            if not taken and not fine:
                fine = True
                continue
            if not taken:
                taken = select(groups, cmodel, 1, value - target, float("-inf"))
                notes.append("no removal landed inside the tolerance; the last step went lower")
                if not taken:
                    raise BudgetError(
                        f"cannot go below {value:.4g} with these guards; raise the budget or loosen "
                        "min_channels / max_ratio / ignored layers"
                    )
            _apply(dg, groups, taken, model)
            steps += 1
            graph = _estimate(model, inputs, board, name)
            value = _metric(graph, spec.metric)
            trajectory.append(value)
            if finetune is not None and opts.finetune_every and steps % opts.finetune_every == 0:
                finetune(model)
    if fine and round_to > 1 and steps:
        notes.append("the last steps removed single channels to land in the tolerance window")
    for n, p in model.named_parameters():
        if n in frozen:  # torch-pruning replaces pruned parameters with trainable ones
            p.requires_grad_(False)
    _check_runs(model, inputs, before)
    if finetune is not None:
        finetune(model)
    rows = layer_rows(before, graph, board)
    return PruneResult(
        model=model,
        model_name=name or type(model).__name__,
        board=board.name,
        importance=importance,
        metric=spec.metric,
        budget=target,
        energy_before_j=original.total_energy_j,
        energy_after_j=graph.total_energy_j,
        latency_before_s=original.total_latency_s,
        latency_after_s=graph.total_latency_s,
        macs_before=original.total_macs,
        macs_after=graph.total_macs,
        params_before=params_before,
        params_after=sum(p.numel() for p in model.parameters()),
        channels_before=sum(init_out.values()),
        channels_after=sum(module_width(m) for m in model.modules()),
        padding_before_j=sum(r.padding_before_j for r in rows),
        padding_after_j=sum(r.padding_after_j for r in rows),
        round_to=round_to,
        kernel_granularity=board.energy_j.conv_kernel_granularity,
        steps=steps,
        trajectory=tuple(trajectory),
        within_tolerance=target * (1 - opts.tolerance) <= value <= target,
        ignored_layers=tuple(ignored),
        pruning_history=tuple(
            (str(m), bool(o), tuple(int(i) for i in idx)) for m, o, idx in dg.pruning_history()
        ),
        elapsed_s=time.perf_counter() - started,
        layers=rows,
        notes=tuple(dict.fromkeys(notes)),
        rewritten=adaptation.rewritten,
    )


# -- helpers ------------------------------------------------------------------------------------


def _estimate(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], board: BoardProfile, name: str | None
) -> LayerGraph:
    graph = trace(model, inputs, name=name or type(model).__name__)
    return annotate(graph, board)


def _metric(graph: LayerGraph, metric: str) -> float:
    return graph.total_energy_j if metric == "energy_j" else graph.total_latency_s


def _ignored(
    model: nn.Module, graph: LayerGraph, opts: PruneOptions, *, kept: tuple[str, ...] = ()
) -> list[str]:
    names = dict(model.named_modules())
    for name in opts.ignore:
        if name not in names:
            import difflib

            close = difflib.get_close_matches(name, list(names), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BudgetError(f"--ignore {name!r} is not a module of the model{hint}")
    default = output_layers(graph, model) if opts.ignore_output_layers else []
    return list(dict.fromkeys([*kept, *default, *opts.ignore]))


def _groups(
    dg: Any,
    ignored: list[nn.Module],
    names: dict[nn.Module, str],
    init_out: dict[str, int],
    opts: PruneOptions,
) -> list[Group]:
    result = []
    roots = [nn.modules.conv._ConvNd, nn.Linear]
    for tp_group in dg.get_all_groups(ignored_layers=ignored, root_module_types=roots):
        spec = group_spec(tp_group, dg, names)
        if not spec.prunable or not spec.out_modules:
            continue
        if spec.channel_groups > 1 and not opts.prune_embedding:
            continue
        floor_channels = max(
            max(opts.min_channels, math.ceil(init_out[m] * (1 - opts.max_ratio)), 1) for m in spec.out_modules
        )
        floor = math.ceil(floor_channels / spec.channel_groups)
        if spec.units > floor:
            result.append(Group(tp_group, spec, floor))
    return result


def _apply(dg: Any, groups: list[Group], taken: dict[int, int], model: nn.Module) -> None:
    for gi, n in taken.items():
        group = groups[gi]
        idxs = group.channel_indices(torch.argsort(group.scores)[:n].tolist())
        root = group.tp_group[0].dep
        pruning_group = dg.get_pruning_group(root.target.module, root.handler, idxs)
        if not dg.check_pruning_group(pruning_group):  # pragma: no cover - guards keep >= 1
            raise UnsupportedModelError(f"torch-pruning refused to prune group {group.spec.root}")
        pruning_group.prune()
    sync_widths(model)


def _postprocess(graph: LayerGraph, metric: str) -> float:
    """The metric of the graph's post-processing node (a detector's NMS), which no channel changes."""
    record = getattr(graph, "postprocess", None)
    return float(record.get(metric, 0.0)) if record else 0.0


def _check_reachable(
    cmodel: ChannelModel, groups: list[Group], target: float, spec: Budget, opts: PruneOptions,
    fixed: float = 0.0,
) -> None:
    state = cmodel.state()
    for g in groups:
        removable = (g.spec.units - g.floor) * g.spec.channel_groups
        cmodel.delta(state, changes_for(cmodel, state, g.spec, removable), commit=True)
    state.total += fixed
    if target < state.total * (1 + 1e-6):
        unit = "J" if spec.metric == "energy_j" else "s"
        raise BudgetError(
            f"budget {target:.4g} {unit} is below the {state.total:.4g} {unit} the guards allow "
            f"(min_channels={opts.min_channels}, max_ratio={opts.max_ratio}, output layers kept); "
            "raise the budget or loosen the guards"
        )


def _check_runs(model: nn.Module, inputs: tuple[torch.Tensor, ...], before: LayerGraph) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(*inputs)
    except Exception as exc:  # pragma: no cover - trace already checked shapes
        raise UnsupportedModelError(f"the pruned model no longer runs: {str(exc)[:160]}") from None
    finally:
        model.train(was_training)
    expected = [tuple(s) for s in before.nx.nodes[before.output]["output_shapes"]]
    leaves = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    got = [tuple(t.shape) for t in leaves]
    if expected and len(got) == len(expected) and got != expected:
        changed = next(i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e)
        raise UnsupportedModelError(
            f"pruning changed the output shape from {expected[changed]} to {got[changed]}"
        )
