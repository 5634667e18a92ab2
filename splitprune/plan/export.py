"""Rebuild a plan's pruned model and write its runnable head and tail (as ``split --export`` does).

The pruned model is rebuilt from the unpruned one by replaying torch-pruning's pruning history on a
copy (weights of the kept channels are the original ones), so nothing but plain data is kept per
plan. The tail is the server side of the pruned model: where the cut tensor's channels were pruned,
its first layers read fewer input channels, exactly as in the pruned full model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..export import export_split
from ..graph import trace
from ..prune.adapters import adapt
from ..prune.groups import build_dependency
from .result import PlanResult, PlanSweep

__all__ = ["export_plan", "pruned_model"]


def pruned_model(
    model: nn.Module, example_inputs: tuple[torch.Tensor, ...], sweep: PlanSweep, result: PlanResult
) -> nn.Module:
    """A pruned copy of ``model`` as ``result``'s plan prunes it (``model`` is not modified)."""
    work = copy.deepcopy(model)
    if sweep.rewritten:  # the plan pruned the adapted form: rewrite the copy the same way first
        adapt(work)
    history = sweep.history(result)
    if history:
        dg = build_dependency(work, example_inputs)
        dg.load_pruning_history([[m, o, list(idx)] for m, o, idx in history])
    return work.eval()


def export_plan(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    sweep: PlanSweep,
    directory: Path,
    *,
    result: PlanResult | None = None,
) -> dict[str, Any]:
    """Write ``head.pt2``, ``tail.pt2``, their code and ``manifest.json`` for a plan (default: the first).

    Returns:
        The manifest, with a ``plan`` entry (figures of the plan, pruned layers).

    Raises:
        ExportError: The model cannot be split there or torch.export fails.
    """
    result = result or sweep.plans[0]
    pruned = pruned_model(model, example_inputs, sweep, result)
    graph = trace(pruned, example_inputs, name=sweep.model)
    problem = result.problem
    device = [problem.names[v] for v in range(problem.n) if result.best.device_mask[v]]
    wire_bytes = {row["name"]: row["wire_bytes"] for row in result.cut}
    manifest = export_split(graph.gm, device, example_inputs, Path(directory), model=sweep.model,
                            wire_bytes=wire_bytes)
    return manifest
