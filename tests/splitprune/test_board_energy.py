"""Board profiles (strict loading, provenance) and the energy annotation formula."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from splitprune import annotate, load_board, trace
from splitprune.deploy import configure
from splitprune.errors import ConfigError

SHIPPED = Path(__file__).resolve().parent / "tx2_schema2.toml"  # the schema-2 TX2 profile of splitprune 0.1


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
        ("conv_per_mac = 3.755e-11", "conv_per_mac = -3.755e-11", "bad value for 'energy_j.conv_per_mac'"),
        ("linear_per_mac = 3.755e-11", "linear_per_mac = 1e-9\nflops = 1", "unknown key 'energy_j.flops'"),
        ("schema_version = 2", "schema_version = 2\nshema = 2", "unknown key 'shema'"),
        ('"energy_j.memory_per_byte" =', '"energy_j.memory_bite" =', "no entry for energy_j.memory_per_byte"),
        ("schema_version = 2", "schema_version = 7", "schema_version 7 is not supported"),
        ("default = 1.570e-04", "default = -1.0", "launch_floor.default must be a finite number"),
        ("static_power_w = 5.0", "static_power_w = 5.0\nwatts = 1", "unknown key 'energy_j.watts'"),
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
    with pytest.raises(ConfigError, match="use one of agx-orin, agx-xavier, h100-nvml, .*tx2, xavier-nx"):
        load_board("jetson-tx1")


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 40, 3, padding=1)  # 40 kernels: two tiles of 32
        self.bn = nn.BatchNorm2d(40)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(40, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.bn(self.conv(x))), 1))


def _smooth_max(a: float, b: float) -> float:
    return (a**8 + b**8) ** (1 / 8)


def test_annotation_matches_the_formula_by_hand():
    profile = load_board("tx2")
    t, e = profile.latency_s, profile.energy_j
    graph = annotate(trace(Small(), torch.zeros(1, 3, 16, 16)), profile)
    nodes = graph.nx.nodes
    conv_macs = 40 * 16 * 16 * 3 * 9
    padding = math.ceil(40 / 32) * 32 / 40
    conv_bytes = nodes["conv"]["mem_bytes"]
    conv_gpu = max(t.conv_per_mac * conv_macs * padding, t.memory_per_byte * conv_bytes) + t.static_per_layer
    floor = t.launch_floor["default"]
    assert nodes["conv"]["latency_s"] == pytest.approx(_smooth_max(floor, conv_gpu))
    conv_work = e.conv_per_mac * conv_macs * padding + e.memory_per_byte * conv_bytes + e.static_per_layer
    assert nodes["conv"]["energy_j"] == pytest.approx(
        e.static_power_w * nodes["conv"]["latency_s"] + conv_work
    )
    # read + write activations; weight, bias, running mean and var; the int64 batch counter
    bn_bytes = 2 * 40 * 16 * 16 * 4 + 4 * 40 * 4 + 8
    bn_gpu = t.memory_per_byte * bn_bytes + t.static_per_layer
    assert nodes["bn"]["latency_s"] == pytest.approx(_smooth_max(floor, bn_gpu))
    fc_bytes = nodes["fc"]["mem_bytes"]
    fc_gpu = max(t.linear_per_mac * 400, t.memory_per_byte * fc_bytes) + t.static_per_layer
    assert nodes["fc"]["latency_s"] == pytest.approx(_smooth_max(floor, fc_gpu))
    assert nodes["flatten"]["latency_s"] == t.network_per_op == 0.0  # a view: dispatch only
    expected_total = sum(nodes[n]["energy_j"] for n in graph.order)
    assert graph.total_energy_j == pytest.approx(expected_total)
    assert graph.total_latency_s == pytest.approx(sum(nodes[n]["latency_s"] for n in graph.order))


def test_schema_1_profiles_still_load_with_their_formula(tmp_path):
    old = load_board(Path(__file__).parent / "data" / "tx2_schema1.toml")
    assert old.schema_version == 1 and old.latency_s.launch_floor == {} and old.energy_j.static_power_w == 0
    e = old.energy_j
    # no launch floor, no static power: cost = the work's term + static_per_layer, as in schema 1
    conv = e.latency_cost("conv", macs=10**8, mem_bytes=10**5, kernels=64)
    assert conv == pytest.approx(e.conv_per_mac * 10**8 + e.static_per_layer)
    bn = e.latency_cost("bn", macs=0, mem_bytes=10**6, kernels=0)
    assert bn == pytest.approx(e.memory_per_byte * 10**6 + e.static_per_layer)
    assert e.latency_cost("reshape", macs=0, mem_bytes=10**6) == 0.0


def test_graph_mode_drops_the_cpu_dispatch_terms():
    eager = load_board("tx2")
    graph = configure(eager, mode="graph")
    assert graph.latency_s.launch_floor == {} and graph.latency_s.network_per_op == 0
    small = {"macs": 10**4, "mem_bytes": 10**4, "kernels": 32}
    assert eager.latency_s.latency_cost("conv", **small) == pytest.approx(
        eager.latency_s.launch_floor["default"], rel=0.01
    )
    assert graph.latency_s.latency_cost("conv", **small) < 0.1 * eager.latency_s.latency_cost("conv", **small)
    big = {"macs": 10**10, "mem_bytes": 10**6, "kernels": 64}  # compute-bound: the same either way
    assert graph.latency_s.latency_cost("conv", **big) == pytest.approx(
        eager.latency_s.latency_cost("conv", **big)
    )
    energy = [p.energy_j.energy_cost("conv", latency_s=p.latency_s.latency_cost("conv", **small), **small)
              for p in (graph, eager)]
    assert energy[0] < energy[1]
    with pytest.raises(ConfigError, match="unknown mode 'lazy'"):
        configure(eager, mode="lazy")


def test_kernel_padding_makes_multiples_of_the_granularity_cheaper_per_mac():
    cost = load_board(SHIPPED).energy_j
    per_mac = [cost.latency_cost("conv", macs=10**6, mem_bytes=0, kernels=k) for k in (32, 33, 64)]
    assert per_mac[0] == per_mac[2] < per_mac[1]


def test_placeholder_tables_are_refused_unless_asked_for(tmp_path):
    path = write_variant(tmp_path, 'replace_with = "', 'unmeasured = ["energy_j"]\nreplace_with = "')
    profile = load_board(path)
    graph = trace(Small(), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="no measured energy_j table"):
        annotate(graph, profile)
    assert annotate(graph, profile, allow_placeholders=True).total_latency_s > 0
