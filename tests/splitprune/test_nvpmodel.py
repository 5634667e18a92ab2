"""A Jetson's own nvpmodel.conf prices a power mode no profile lists (``--nvpmodel-conf``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_cli

from splitprune import Deployment
from splitprune.errors import ConfigError
from splitprune.nvpmodel import load_nvpmodel, parse_nvpmodel

CONF = Path(__file__).parent / "data" / "nvpmodel_xavier_nx.conf"


def test_modes_clocks_and_units_are_read():
    conf = load_nvpmodel(CONF)
    assert [m.mode_id for m in conf.modes] == [2, 4, 8, 9, 10] and conf.default_id == 8
    ten = conf.find("MODE_10W_4CORE")
    assert ten is conf.find("4") and ten is conf.find("mode_10w_4core")
    assert ten.gpu_clock_hz == 803_250_000 and ten.emc_clock_hz == 1_600_000_000
    assert ten.cpu_clock_hz == pytest.approx(1_190_400_000)  # cpufreq's kHz -> Hz
    assert ten.cpu_cores == 4 and ten.tpc_mask == 1
    assert conf.find("MODE_LOWCLOCK").emc_clock_hz is None  # -1: no cap


@pytest.mark.parametrize("mode", ["MODE_10W_4CORE", "MODE_15W_6CORE", "MODE_20W_6CORE"])
def test_a_mode_of_the_file_prices_like_the_profiles_mode_of_the_same_clocks(mode):
    options = {"mode": "tensorrt", "precision": "fp16", "power_mode": mode}
    from_file = Deployment.of("xavier-nx", nvpmodel_conf=CONF, **options)
    from_table = Deployment.of("xavier-nx", **options)
    assert from_file.power_mode == f"nvpmodel:{mode}" and from_file.to_dict()["explicit_clocks"]
    for table in ("energy_j", "latency_s"):
        a, b = getattr(from_file.profile, table), getattr(from_table.profile, table)
        for key in ("conv_per_mac", "memory_per_byte", "static_per_layer", "static_power_w", "per_inference"):
            assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-12), (mode, table, key)


def test_a_custom_mode_slows_the_gpu_and_uncapped_clocks_stay_the_fitted_ones():
    low = Deployment.of("xavier-nx", mode="graph", power_mode="9", nvpmodel_conf=CONF)
    maxn = Deployment.of("xavier-nx", mode="graph")
    assert low.power is not None and low.power.emc_clock_hz == maxn.power.emc_clock_hz
    assert low.profile.latency_s.conv_per_mac == pytest.approx(
        maxn.profile.latency_s.conv_per_mac * 1_109_250_000 / 624_750_000
    )
    assert low.profile.latency_s.memory_per_byte == pytest.approx(maxn.profile.latency_s.memory_per_byte)
    assert low.profile.energy_j.conv_per_mac < maxn.profile.energy_j.conv_per_mac  # lower voltage


def test_gating_counts_only_tpcs_beyond_the_fitted_modes_mask():
    gated = Deployment.of("xavier-nx", mode="graph", power_mode="MODE_GATED", nvpmodel_conf=CONF)
    assert gated.power.sm_count == 4  # mask 3 vs the fitted mode's 1: one more TPC of two SMs
    same = Deployment.of("xavier-nx", mode="graph", power_mode="8", nvpmodel_conf=CONF)
    assert same.power.sm_count in (None, 6)


def test_cli_prices_a_mode_from_the_file():
    run = run_cli("estimate", "torchvision:squeezenet1_0", "--board", "xavier-nx", "--mode", "graph",
                  "--nvpmodel-conf", str(CONF), "--power-mode", "MODE_LOWCLOCK", "--json")
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert doc["power_mode"] == "nvpmodel:MODE_LOWCLOCK"
    assert doc["deployment"]["clocks"]["gpu_clock_hz"] == 624_750_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("GPU MAX_FREQ 1\n", "no '< POWER_MODEL"),
        ("< POWER_MODEL NAME=X >\n", "needs ID"),
        ("< POWER_MODEL ID=1 NAME=X >\nGPU MAX_FREQ\n", "expected 'PARAM ARG VALUE'"),
        ("< POWER_MODEL ID=1 NAME=X\n", "malformed header"),
    ],
)
def test_malformed_files_fail_with_the_line(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_nvpmodel(text)


def test_unknown_mode_and_missing_power_mode_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="no power mode 'MODE_99'.*4 \\(MODE_10W_4CORE\\)"):
        Deployment.of("xavier-nx", power_mode="MODE_99", nvpmodel_conf=CONF)
    with pytest.raises(ConfigError, match="needs --power-mode"):
        Deployment.of("xavier-nx", nvpmodel_conf=CONF)
    run = run_cli("estimate", "torchvision:squeezenet1_0", "--board", "xavier-nx",
                  "--nvpmodel-conf", str(tmp_path / "missing.conf"), "--power-mode", "0")
    assert run.code != 0 and "cannot read --nvpmodel-conf" in run.err and "Traceback" not in run.err
