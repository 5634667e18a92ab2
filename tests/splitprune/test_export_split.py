"""Head/tail artifacts: tail(head(x)) == model(x) at cuts inside residual blocks."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from splitprune import trace
from splitprune.export import ExportError, export_split, split_modules

MODELS = {
    # name: (factory, input shape, module of the last device node: a cut inside a residual block)
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), (1, 3, 64, 64), "layer2.0.conv1"),
    "googlenet": (
        lambda: torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False),
        (1, 3, 64, 64),
        "inception4a.branch2.0.conv",
    ),
    "mobilenet_v2": (
        lambda: torchvision.models.mobilenet_v2(weights=None), (1, 3, 64, 64), "features.3.conv.1.0"
    ),
    "vit": (
        lambda: torchvision.models.VisionTransformer(
            image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
        ),
        (1, 3, 32, 32),
        "encoder.layers.encoder_layer_0.ln_2",
    ),
}


def _traced(name):
    factory, shape, last_module = MODELS[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(shape)
    graph = trace(model, x)
    end = next(i for i, n in enumerate(graph.order) if graph.nx.nodes[n]["module"] == last_module)
    return model, x, graph, set(graph.order[: end + 1])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tail_of_head_equals_model_inside_a_residual_block(name):
    model, x, graph, device = _traced(name)
    parts = split_modules(graph.gm, device)
    assert len(parts.crossing) >= 2  # the block's input (skip path) and the branch both cross
    assert not parts.all_local
    with torch.no_grad():
        crossing = parts.head(x)
        assert isinstance(crossing, tuple) and len(crossing) == len(parts.crossing)
        torch.testing.assert_close(parts.tail(*crossing), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("where", ["input", "all"])
def test_full_offload_and_all_local_round_trip(where):
    model, x, graph, _ = _traced("resnet18")
    device = set(graph.inputs) if where == "input" else set(graph.order)
    parts = split_modules(graph.gm, device)
    assert parts.all_local == (where == "all")
    with torch.no_grad():
        torch.testing.assert_close(parts.tail(*parts.head(x)), model(x))


def test_placement_not_closed_under_predecessors_is_refused():
    _, _, graph, device = _traced("resnet18")
    with pytest.raises(ExportError, match="reads"):
        split_modules(graph.gm, device - {graph.order[1]})


def test_export_writes_loadable_programs_and_manifest(tmp_path):
    model, x, graph, device = _traced("resnet18")
    manifest = export_split(graph.gm, device, (x,), tmp_path, model="resnet18",
                            wire_bytes={"layer2_0_conv1": 123})
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    assert [t["name"] for t in manifest["crossing"]] == list(split_modules(graph.gm, device).crossing)
    assert sum(t["out_bytes"] for t in manifest["crossing"]) > 0
    assert [t.get("wire_bytes") for t in manifest["crossing"] if t["name"] == "layer2_0_conv1"] == [123]
    head = torch.export.load(tmp_path / "head.pt2").module()
    tail = torch.export.load(tmp_path / "tail.pt2").module()
    with torch.no_grad():
        torch.testing.assert_close(tail(*head(x)), model(x), rtol=1e-5, atol=1e-5)
    assert "def forward" in (tmp_path / "head.py").read_text()
