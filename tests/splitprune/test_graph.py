"""Tracing: DAG structure, torchvision coverage, errors, and leaving the user's model alone."""

import pytest
import torch
import torchvision
from torch import nn

from splitprune import trace
from splitprune.errors import InputShapeError, TraceError
from splitprune.graph import cut_bytes_along_order
from splitprune.models import load_model, torchvision_classifiers


def meta_graph(name):
    loaded = load_model(f"torchvision:{name}", device="meta")
    return trace(loaded.module, torch.empty(loaded.input_shape, device="meta")), loaded


def test_resnet_residual_adds_join_two_branches():
    graph, _ = meta_graph("resnet18")
    adds = [n for n in graph.order if graph.nx.nodes[n]["kind"] == "add"]
    assert len(adds) == 8  # one per basic block
    assert all(graph.nx.in_degree(n) == 2 for n in adds)
    assert graph.nx.number_of_nodes() == len(graph.order)
    position = {name: i for i, name in enumerate(graph.order)}
    assert all(position[u] < position[v] for u, v in graph.nx.edges)


def test_googlenet_concat_joins_four_branches():
    graph, _ = meta_graph("googlenet")
    cats = [n for n in graph.order if graph.nx.nodes[n]["kind"] == "cat"]
    assert len(cats) == 9  # nine inception blocks
    assert all(graph.nx.in_degree(n) == 4 for n in cats)


def test_densenet_concat_in_degree_grows_with_depth():
    graph, _ = meta_graph("densenet121")
    degrees = [graph.nx.in_degree(n) for n in graph.order if graph.nx.nodes[n]["kind"] == "cat"]
    # block 3 has 24 layers; its output concatenates the block input and all 24 layer outputs
    assert max(degrees) == 25
    assert min(degrees) >= 1


def test_cut_bytes_after_input_is_the_input_tensor():
    graph, _ = meta_graph("resnet18")
    cuts = cut_bytes_along_order(graph)
    assert cuts[0] == 3 * 224 * 224 * 4
    assert cuts[-1] == 0
    fc_index = graph.order.index("fc")
    assert cuts[fc_index] == 1000 * 4


@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision_classifiers())
def test_every_torchvision_classifier_matches_published_macs(name):
    graph, loaded = meta_graph(name)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    crop = weights.transforms().crop_size[0]
    if loaded.input_shape[-1] != crop:  # model built for another resolution (vit_h_14 without weights)
        assert graph.total_macs > 0
        return
    # the eval-mode forward skips Inception v3's auxiliary classifier, whose weights are published
    unused = sum(p.numel() for p in loaded.module.AuxLogits.parameters()) if name == "inception_v3" else 0
    assert graph.total_params == weights.meta["num_params"] - unused
    assert graph.total_macs / 1e9 == pytest.approx(weights.meta["_ops"], rel=0.02)


def test_cpu_model_is_traced_without_touching_it():
    model = torchvision.models.resnet18(weights=None).train()
    before = model.conv1.weight.clone()
    graph = trace(model, torch.zeros(1, 3, 64, 64))
    assert model.training
    assert model.conv1.weight.device.type == "cpu"
    assert torch.equal(model.conv1.weight, before)
    assert graph.gm(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Gate()

    def forward(self, x):
        return self.inner(x)


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


def test_untraceable_model_names_the_module():
    with pytest.raises(TraceError, match=r"module 'inner' \(Gate\)"):
        trace(DataDependent(), torch.zeros(1, 3))


class Repeat(nn.Module):
    def forward(self, x):
        for _ in range(x.shape[0]):  # fx cannot iterate over a traced size; meta tensors can
            x = x * 2
        return x


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Repeat()

    def forward(self, x):
        return self.inner(x)


def test_leaf_modules_keep_untraceable_code_opaque():
    with pytest.raises(TraceError, match="Repeat"):
        trace(Outer(), torch.zeros(2, 3), tracer="fx")
    graph = trace(Outer(), torch.zeros(2, 3), leaf_modules=[Repeat])
    assert graph.tracer == "fx"
    assert [graph.nx.nodes[n]["kind"] for n in graph.order] == ["input", "other", "output"]


def test_wrong_input_shape_is_a_clear_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(InputShapeError, match="does not fit layer '0' \\(Conv2d\\)"):
        trace(model, torch.zeros(1, 5, 8, 8))


def test_missing_input_is_a_clear_error():
    class TwoInputs(nn.Module):
        def forward(self, a, b):
            return a + b

    with pytest.raises(InputShapeError, match="more inputs"):
        trace(TwoInputs(), torch.zeros(2))


def test_dispatches_count_the_aten_ops_each_node_runs():
    with torch.device("meta"):
        vit = torchvision.models.vit_b_16(weights=None)
    graph = trace(vit, torch.empty(1, 3, 224, 224, device="meta"))
    by_kind: dict[str, set[int]] = {}
    for name in graph.order:
        by_kind.setdefault(graph.nodes[name]["kind"], set()).add(graph.nodes[name]["dispatches"])
    assert by_kind["conv"] == {1} and by_kind["norm"] == {1} and by_kind["add"] == {1}
    assert by_kind["reshape"] == {0} and by_kind["input"] == {0}
    # nn.MultiheadAttention: two projections, scaling, two batched matmuls, softmax, layout copies
    assert by_kind["attention"] == {9}
