"""Planning YOLO: prune's adapters rewrite the copy it prunes, Detect/DFL keep their outputs, it runs."""

from __future__ import annotations

import pytest
import torch
from torch.utils._pytree import tree_flatten

from splitprune import annotate, trace
from splitprune.board import load_board
from splitprune.deploy import configure
from splitprune.link import load_link
from splitprune.models import load_model
from splitprune.plan import PlanOptions, plan
from splitprune.plan.export import pruned_model
from splitprune.prune.adapters import kept_modules
from splitprune.prune.groups import module_width


def test_plan_prunes_yolov8n_as_prune_does_and_the_planned_model_runs():
    pytest.importorskip("ultralytics")
    torch.manual_seed(0)
    model = load_model("ultralytics:yolov8n").module.eval()
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        reference = model(x)
    # graph mode: at this size the eager Orin Nano is launch-bound and pruning saves little
    deployed = configure(load_board("orin-nano"), mode="graph")
    local_j = annotate(trace(model, (x,)), deployed).total_energy_j
    budget = 0.95 * local_j  # below all-local; full offload over 5G costs several times more
    options = PlanOptions(energy_budget_j=budget, step_saliency=0.05, max_candidates=3)
    sweep = plan(model, x, deployed, load_link("5g"), options=options, name="yolov8n")
    result = sweep.plans[0]

    assert any(type(m).__name__ == "C2f" for m in model.modules())  # the caller's model is untouched
    assert len(sweep.rewritten) == 8 and sweep.to_dict()["search"]["rewritten"] == list(sweep.rewritten)
    assert result.best.feasible and result.best.energy_j <= budget * (1 + 1e-9)
    assert result.best.saliency_removed > 0 and result.pruned_layers

    pruned = pruned_model(model, (x,), sweep, result)
    kept = kept_modules(pruned)
    head = pruned.model[-1]
    assert not any(m == k or m.startswith(k + ".") for m in result.pruned_layers for k in kept)
    assert head.dfl.conv.out_channels == 1 and all(t[2].out_channels == 80 for t in head.cv3)
    for name, (before, after) in result.pruned_layers.items():  # the widths the plan reports are real
        assert before > after == module_width(pruned.get_submodule(name))
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        out = pruned(x)
    leaves, spec = tree_flatten(out)
    ref_leaves, ref_spec = tree_flatten(reference)
    assert spec == ref_spec
    assert [t.shape for t in leaves] == [t.shape for t in ref_leaves]
