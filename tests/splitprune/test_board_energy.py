"""Board profiles (strict loading, provenance) and the energy annotation formula."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from splitprune import annotate, load_board, trace
from splitprune.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "boards" / "tx2.toml"


@pytest.mark.parametrize("name", ["tx2", "xavier-nx"])
def test_shipped_boards_load_and_say_they_are_derived(name):
    profile = load_board(name)
    assert profile.provenance.kind == "derived"
    assert set(profile.coefficient_keys()) <= set(profile.provenance.values)
    assert profile.energy_j.conv_per_mac > 0


def write_variant(tmp_path, old, new):
    text = SHIPPED.read_text()
    assert old in text
    path = tmp_path / "board.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("conv_per_mac = 7.51e-11", "conv_per_mac = -7.51e-11", "bad value for 'energy_j.conv_per_mac'"),
        ("linear_per_mac = 1.117e-9", "linear_per_mac = 1e-9\nflops = 1", "unknown key 'energy_j.flops'"),
        ("schema_version = 1", "schema_version = 1\nshema = 2", "unknown key 'shema'"),
        ('"energy_j.memory_per_byte" =', '"energy_j.memory_bite" =', "no entry for energy_j.memory_per_byte"),
        ("schema_version = 1", "schema_version = 7", "schema_version 7 is not supported"),
        ('precision = "fp32"', 'precision = "fp64"', "bad value for 'board.precision'"),
        ("[energy_j]", "[energy_j", "not valid TOML"),
    ],
)
def test_bad_profiles_fail_with_one_line_naming_the_key(tmp_path, old, new, message):
    path = write_variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_board(path)
    text = str(info.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_missing_provenance_table_is_rejected(tmp_path):
    text = SHIPPED.read_text()
    path = tmp_path / "board.toml"
    path.write_text(text[: text.index("[provenance]")])
    with pytest.raises(ConfigError, match="missing key 'provenance'"):
        load_board(path)


def test_unknown_board_names_the_choices():
    with pytest.raises(ConfigError, match="use one of tx2, xavier-nx"):
        load_board("orin-nano")


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 40, 3, padding=1)  # 40 kernels: two tiles of 32
        self.bn = nn.BatchNorm2d(40)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(40, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.bn(self.conv(x))), 1))


def test_annotation_matches_the_formula_by_hand():
    profile = load_board("tx2")
    e = profile.energy_j
    graph = annotate(trace(Small(), torch.zeros(1, 3, 16, 16)), profile)
    nodes = graph.nx.nodes
    conv_macs = 40 * 16 * 16 * 3 * 9
    padding = math.ceil(40 / 32) * 32 / 40
    expected_conv = e.conv_per_mac * conv_macs * padding + e.static_per_layer
    assert nodes["conv"]["energy_j"] == pytest.approx(expected_conv)
    # read + write activations; weight, bias, running mean and var; the int64 batch counter
    bn_bytes = 2 * 40 * 16 * 16 * 4 + 4 * 40 * 4 + 8
    assert nodes["bn"]["energy_j"] == pytest.approx(e.memory_per_byte * bn_bytes + e.static_per_layer)
    assert nodes["fc"]["energy_j"] == pytest.approx(e.linear_per_mac * 400 + e.static_per_layer)
    assert nodes["flatten"]["energy_j"] == 0.0
    expected_total = sum(nodes[n]["energy_j"] for n in graph.order)
    assert graph.total_energy_j == pytest.approx(expected_total)
    assert graph.total_latency_s == pytest.approx(sum(nodes[n]["latency_s"] for n in graph.order))


def test_kernel_padding_makes_multiples_of_the_granularity_cheaper_per_mac():
    cost = load_board("tx2").energy_j
    per_mac = [cost.layer_cost("conv", macs=10**6, mem_bytes=0, kernels=k) for k in (32, 33, 64)]
    assert per_mac[0] == per_mac[2] < per_mac[1]


def test_placeholder_tables_are_refused_unless_asked_for(tmp_path):
    path = write_variant(tmp_path, 'replace_with = "', 'unmeasured = ["energy_j"]\nreplace_with = "')
    profile = load_board(path)
    graph = trace(Small(), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="no measured energy_j table"):
        annotate(graph, profile)
    assert annotate(graph, profile, allow_placeholders=True).total_latency_s > 0
