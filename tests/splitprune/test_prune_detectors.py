"""Pruning detectors: YOLO's C2f rewrite, its Detect outputs kept, budgets met, reloads; SSDlite."""

from __future__ import annotations

import json

import pytest
import torch
from cli_runner import run_cli
from torch import nn
from torch.utils._pytree import tree_leaves

from splitprune import trace
from splitprune.board import load_board
from splitprune.models import load_model
from splitprune.prune import PruneOptions, load_pruned, prune_to_budget, save_pruned
from splitprune.prune.adapters import adapt


def _yolo(name: str) -> nn.Module:
    pytest.importorskip("ultralytics")
    torch.manual_seed(0)
    return load_model(f"ultralytics:{name}").module.eval()


def _same(a, b) -> bool:
    pairs = zip(tree_leaves(a), tree_leaves(b), strict=True)
    return all(torch.allclose(x, y, rtol=1e-5, atol=1e-5) for x, y in pairs)


@pytest.mark.parametrize(("name", "blocks", "attention"), [("yolov8n", 8, False), ("yolo11n", 9, True)])
def test_rewrite_keeps_the_output_and_names_what_it_keeps(name, blocks, attention):
    model, x = _yolo(name), torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        before = model(x)
        adaptation = adapt(model)
        after = model(x)
    assert _same(after, before)
    assert len(adaptation.rewritten) == blocks
    assert not any(type(m).__name__ in ("C2f", "C3k2", "C2PSA") for m in model.modules())
    head = next(n for n, m in model.named_modules() if type(m).__name__ == "Detect")
    assert f"{head}.dfl" in adaptation.kept
    towers = {f"{head}.{tower}.{i}.2" for tower in ("cv2", "cv3") for i in range(3)}
    assert towers <= set(adaptation.kept)
    assert any(k.endswith(".attn") for k in adaptation.kept) == attention


def test_prune_yolov8n_to_a_budget_keeps_the_head_outputs_and_reloads(tmp_path):
    model, x = _yolo("yolov8n"), torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        shapes = [t.shape for t in tree_leaves(model(x))]
    board = load_board("tx2")
    result = prune_to_budget(model, x, board, 0.9, options=PruneOptions(step_fraction=0.1), name="yolov8n")
    assert result.within_tolerance
    assert 0.97 * result.budget <= result.energy_after_j <= result.budget
    assert result.budget == pytest.approx(0.9 * result.energy_before_j)
    assert result.macs_after < result.macs_before and result.params_after < result.params_before
    assert result.rewritten and any("rewritten" in note for note in result.notes)
    assert model.model[-1].dfl.conv.out_channels == 1 and model.model[-1].cv3[0][2].out_channels == 80
    with torch.no_grad():
        pruned = model(x)
    assert [t.shape for t in tree_leaves(pruned)] == shapes

    path = tmp_path / "yolo.pt"
    save_pruned(path, model, result.pruning_history, [x.shape], model_spec="ultralytics:yolov8n",
                rewritten=result.rewritten)
    reloaded = load_pruned(path)
    assert sum(p.numel() for p in reloaded.parameters()) == result.params_after
    with torch.no_grad():
        assert _same(reloaded(x), pruned)


@pytest.mark.slow
def test_cli_prunes_yolov8n_at_640_to_sixty_percent(tmp_path):
    pytest.importorskip("ultralytics")
    saved = tmp_path / "yolov8n.pt"
    code, out, _ = run_cli(
        "prune", "ultralytics:yolov8n", "--budget", "0.6", "--output", str(saved), "--json"
    )
    assert code in (0, None)
    doc = json.loads(out)
    assert doc["input_shape"] == [1, 3, 640, 640]
    assert 0.97 * doc["budget_j"] <= doc["energy_after_j"] <= doc["budget_j"]
    assert doc["budget_j"] == pytest.approx(0.6 * doc["energy_before_j"])
    model = load_pruned(saved)
    assert sum(p.numel() for p in model.parameters()) == doc["params_after"]
    with torch.no_grad():
        boxes = model(torch.zeros(1, 3, 640, 640))[0]
    assert boxes.shape == (1, 84, 8400)


def test_ssdlite_prunes_to_a_budget_with_its_postprocessing_priced_outside():
    torch.manual_seed(0)
    model = load_model("torchvision:ssdlite320_mobilenet_v3_large").module.eval()
    x = torch.randn(1, 3, 320, 320)
    assert trace(model, x).postprocess is not None  # NMS: one priced node outside the network
    with torch.no_grad():
        shapes = [t.shape for t in tree_leaves(model(x))]
    result = prune_to_budget(model, x, load_board("tx2"), 0.8, options=PruneOptions(step_fraction=0.1))
    assert result.within_tolerance and result.macs_after < result.macs_before
    assert not any("disagrees" in note for note in result.notes)  # the NMS node is a fixed term
    with torch.no_grad():
        assert [t.shape for t in tree_leaves(model(x))] == shapes
