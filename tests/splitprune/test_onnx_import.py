"""ONNX files import into the same LayerGraph as a traced model, with MACs from ONNX shape inference."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from splitprune.errors import InputShapeError, ModelLoadError
from splitprune.graph import trace
from splitprune.models import load_model

onnx = pytest.importorskip("onnx")
ROOT = Path(__file__).resolve().parents[2]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        y = y + self.depthwise(y)
        return self.fc(y.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "net.onnx"
    torch.onnx.export(
        Net().eval(), (torch.randn(1, 3, 16, 16),), str(path), dynamo=False,
        input_names=["x"], dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}},
    )  # fmt: skip
    return path


def _flop_counter_macs(model, x):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def test_onnx_graph_matches_flop_counter_at_any_input_shape(onnx_file):
    loaded = load_model(str(onnx_file))
    assert loaded.input_shape == (1, 3, 16, 16) or loaded.input_shape[1] == 3
    for shape in [(1, 3, 16, 16), (2, 3, 24, 32)]:
        graph = trace(loaded.module, torch.empty(shape, device="meta"))
        assert graph.tracer == "onnx"
        assert graph.total_macs == _flop_counter_macs(Net().eval(), torch.zeros(shape))
        assert graph.total_params == sum(p.numel() for p in Net().parameters())
        kinds = [graph.nodes[n]["kind"] for n in graph.order]
        assert kinds.count("conv") == 2 and kinds.count("linear") == 1 and kinds.count("add") == 1
        convs = [n for n in graph.order if graph.nodes[n]["kind"] == "conv"]
        assert [graph.nodes[n]["kernels"] for n in convs] == [8, 1]
        assert graph.nodes[convs[0]]["output_shapes"] == [(shape[0], 8, shape[2], shape[3])]
        add = next(n for n in graph.order if graph.nodes[n]["kind"] == "add")
        assert len(graph.preds[add]) == 2  # the residual join is a real join


def test_onnx_errors_are_one_line(onnx_file, tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(str(tmp_path / "missing.onnx"))
    loaded = load_model(str(onnx_file))
    with pytest.raises(InputShapeError, match="dimensions"):
        trace(loaded.module, torch.empty(1, 3, 16, device="meta"))
    with pytest.raises(ModelLoadError, match="cannot run"):
        loaded.module(torch.zeros(1, 3, 16, 16))


def test_estimate_cli_reads_onnx_and_says_so(onnx_file):
    command = [sys.executable, "-m", "splitprune", "estimate", str(onnx_file), "--json"]
    result = subprocess.run(
        [*command, "--input-shape", "1,3,32,32"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["tracer"] == "onnx" and document["input_shape"] == [1, 3, 32, 32]
    assert document["total_macs"] == _flop_counter_macs(Net().eval(), torch.zeros(1, 3, 32, 32))
