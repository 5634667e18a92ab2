"""MAC counts against hand computation for every conv variant and the matrix products."""

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from splitprune import trace


def single_layer(graph, kind):
    nodes = [n for n in graph.order if graph.nx.nodes[n]["kind"] == kind]
    assert len(nodes) == 1, nodes
    return graph.nx.nodes[nodes[0]]


def conv_macs(out_shape, in_channels, groups, kernel):
    return math.prod(out_shape) * (in_channels // groups) * math.prod(kernel)


@pytest.mark.parametrize(
    ("layer", "in_shape"),
    [
        (nn.Conv1d(4, 8, 3), (2, 4, 20)),
        (nn.Conv2d(3, 16, 3, stride=2, padding=1), (1, 3, 32, 32)),
        (nn.Conv2d(8, 8, 3, groups=8, padding=1), (1, 8, 16, 16)),  # depthwise
        (nn.Conv2d(8, 12, 3, groups=4, dilation=2), (1, 8, 17, 17)),
        (nn.Conv2d(6, 10, (1, 5), padding=(0, 2)), (3, 6, 9, 9)),
        (nn.Conv3d(2, 4, 3, stride=(1, 2, 2)), (1, 2, 8, 10, 10)),
    ],
)
def test_conv_macs_match_hand_count(layer, in_shape):
    graph = trace(nn.Sequential(layer), torch.zeros(in_shape))
    node = single_layer(graph, "conv")
    out_shape = layer(torch.zeros(in_shape)).shape
    expected = conv_macs(out_shape, layer.in_channels, layer.groups, layer.kernel_size)
    assert node["macs"] == expected
    assert node["kernels"] == layer.out_channels // layer.groups
    assert node["output_shapes"] == [tuple(out_shape)]


@pytest.mark.parametrize(
    ("layer", "in_shape"),
    [
        (nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), (1, 8, 7, 7)),
        (nn.ConvTranspose1d(6, 6, 4, stride=2, groups=3), (2, 6, 11)),
        (nn.ConvTranspose3d(2, 3, 2, stride=2), (1, 2, 4, 4, 4)),
    ],
)
def test_transposed_conv_macs_count_each_input_once(layer, in_shape):
    graph = trace(nn.Sequential(layer), torch.zeros(in_shape))
    node = single_layer(graph, "conv")
    # each input element is multiplied into (out_channels / groups) * kernel outputs
    expected = math.prod(in_shape) * (layer.out_channels // layer.groups) * math.prod(layer.kernel_size)
    assert node["macs"] == expected
    assert node["kernels"] == layer.out_channels // layer.groups


class FunctionalConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(12, 2, 3, 3))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight, None, 1, 1, 1, 4)  # groups=4


def test_functional_conv_counts_weights_groups_and_kernels_per_group():
    node = single_layer(trace(FunctionalConv(), torch.zeros(1, 8, 5, 5)), "conv")
    assert node["macs"] == 12 * 25 * 2 * 9
    assert node["kernels"] == 3
    assert node["params"] == 12 * 2 * 9


def test_linear_macs_and_params():
    graph = trace(nn.Sequential(nn.Linear(100, 30)), torch.zeros(4, 100))
    node = single_layer(graph, "linear")
    assert node["macs"] == 4 * 100 * 30
    assert node["params"] == 100 * 30 + 30
    assert node["param_bytes"] == (100 * 30 + 30) * 4


def test_linear_on_a_sequence_is_a_gemm():
    graph = trace(nn.Sequential(nn.Linear(16, 8)), torch.zeros(2, 5, 16))
    node = single_layer(graph, "matmul")
    assert node["macs"] == 2 * 5 * 16 * 8


class Products(nn.Module):
    def forward(self, a, b):
        x = torch.matmul(a, b)  # (2, 3, 4) @ (2, 4, 5)
        y = torch.bmm(a, b)
        z = torch.einsum("bik,bkj->bij", a, b)
        return x + y + z


def test_matmul_bmm_einsum_macs():
    graph = trace(Products(), (torch.zeros(2, 3, 4), torch.zeros(2, 4, 5)))
    products = [graph.nx.nodes[n] for n in graph.order if graph.nx.nodes[n]["kind"] == "matmul"]
    assert [p["macs"] for p in products] == [2 * 3 * 4 * 5] * 3


class Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_scaled_dot_product_attention_macs():
    q, k, v = torch.zeros(2, 4, 10, 8), torch.zeros(2, 4, 12, 8), torch.zeros(2, 4, 12, 6)
    node = single_layer(trace(Attention(), (q, k, v)), "attention")
    assert node["macs"] == 2 * 4 * 10 * 12 * (8 + 6)


def test_multihead_attention_macs():
    mha = nn.MultiheadAttention(embed_dim=16, num_heads=4, batch_first=True)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    node = single_layer(trace(Block(), torch.zeros(3, 7, 16)), "attention")
    length, e = 7, 16
    per_item = 4 * length * e * e + 2 * length * length * e
    assert node["macs"] == 3 * per_item


def test_elementwise_and_pooling_count_ops_not_macs():
    model = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1))
    graph = trace(model, torch.zeros(1, 4, 8, 8))
    assert graph.total_macs == 0
    kinds = {graph.nx.nodes[n]["kind"]: graph.nx.nodes[n] for n in graph.order}
    assert kinds["act"]["ops"] == 4 * 8 * 8
    assert kinds["bn"]["mem_bytes"] == 2 * 4 * 8 * 8 * 4 + kinds["bn"]["param_bytes"]
