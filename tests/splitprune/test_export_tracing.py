"""The torch.export tracer: models fx cannot trace, priced like fx traces and cut like them."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from splitprune.errors import TraceError
from splitprune.export import split_modules
from splitprune.graph import trace


class Heads(nn.Module):
    """fx cannot trace it: it branches on a traced size."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.heads = nn.ModuleList(nn.Conv2d(8, 4, 1) for _ in range(3))
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        outs = [head(y) for head in self.heads]
        pooled = sum(o.mean(dim=(2, 3)) for o in outs)
        if x.shape[0] > 1:  # fx cannot branch on a proxy
            pooled = pooled * 2
        return self.fc(pooled)


def _flop_counter_macs(model, x):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def test_fx_failure_falls_back_to_export_with_the_same_attributes():
    model = Heads().eval()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(TraceError):
        trace(model, x, tracer="fx")
    graph = trace(model, x)
    assert graph.tracer == "export"
    assert graph.to_dict()["tracer"] == "export"
    kinds = [graph.nodes[n]["kind"] for n in graph.order]
    assert kinds.count("conv") == 4 and kinds.count("linear") == 1
    assert kinds[0] == "input" and kinds[-1] == "output"
    assert graph.total_macs == _flop_counter_macs(model, x)
    assert graph.total_params == sum(p.numel() for p in model.parameters())
    conv = next(n for n in graph.order if graph.nodes[n]["kind"] == "conv")
    assert graph.nodes[conv]["kernels"] == 8 and graph.nodes[conv]["module"] == "stem"
    assert graph.nodes[conv]["output_shapes"] == [(2, 8, 16, 16)]


def test_export_graph_module_runs_and_splits_like_the_model():
    torch.manual_seed(0)
    model = Heads().eval()
    x = torch.randn(1, 3, 16, 16)
    graph = trace(model, x, tracer="export")
    assert {n.name for n in graph.gm.graph.nodes if n.op != "get_attr"} == set(graph.order)
    expected = model(x)
    torch.testing.assert_close(graph.gm(x), expected)
    first_half = graph.order[: len(graph.order) // 2]
    parts = split_modules(graph.gm, first_half)
    torch.testing.assert_close(parts.tail(*parts.head(x)), expected)


def test_export_leaves_the_model_as_it_found_it():
    class Cache(nn.Module):
        def __init__(self):
            super().__init__()
            self.shape = None

        def forward(self, x):
            if self.shape != x.shape:
                self.grid = torch.arange(x.shape[-1], dtype=x.dtype)  # YOLO's anchors work like this
                self.shape = x.shape
            return x + self.grid

    model = Cache()
    x = torch.randn(2, 4)
    trace(model, x, tracer="export")
    assert model.shape is None and not hasattr(model, "grid")
    torch.testing.assert_close(model(x), x + torch.arange(4.0))


def test_yolo11n_traces_through_export_and_matches_flop_counter_and_the_guide():
    pytest.importorskip("ultralytics")
    from splitprune.models import load_model

    loaded = load_model("ultralytics:yolo11n")
    x = torch.zeros(loaded.input_shape)
    graph = trace(loaded.module, x)
    assert graph.tracer == "export"
    assert loaded.input_shape == (1, 3, 640, 640)
    reference = _flop_counter_macs(loaded.module, x)
    assert graph.total_macs == pytest.approx(reference, rel=0.03)
    # Ultralytics' guide (docs.ultralytics.com/models/yolo11): 6.5 GFLOPs at 640, FLOPs = 2 MACs.
    assert 2 * graph.total_macs / 1e9 == pytest.approx(6.5, rel=0.03)
    assert graph.total_params == sum(p.numel() for p in loaded.module.parameters())
