"""Calibration on the real H100 NVML sweeps in data/h100 (the project's first real energy data).

Fakes passed what real data broke: these tests run the default ``calibrate`` and ``validate`` on the
shared CSVs and hold the held-out error to the targets of the cost-model issue.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_cli

from splitprune.board import load_board
from splitprune.calibrate import calibrate, read_sweep, validate

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / "data" / "h100"
BATCHES = ("b1", "b16")


@pytest.fixture(scope="module", params=BATCHES)
def fitted(request: pytest.FixtureRequest):
    data = read_sweep(SHARED / f"h100_{request.param}.csv")
    return request.param, data, calibrate(data, name=f"h100-{request.param}")


def test_default_cli_calibration_fits_the_real_sweeps(tmp_path: Path):
    for batch in BATCHES:
        out = tmp_path / f"{batch}.toml"
        code, stdout, err = run_cli(
            "calibrate", str(SHARED / f"h100_{batch}.csv"), "--name", "h100", "--out", str(out), "--json"
        )
        assert code == 0, err
        doc = json.loads(stdout)
        assert doc["energy_basis"] == "gross" and doc["unmeasured"] == []
        assert load_board(out).provenance.kind == "measured"
        code, stdout, err = run_cli(
            "validate", str(SHARED / f"h100_{batch}.csv"), "--board", str(out), "--metric", "both", "--json"
        )
        assert code == 0, err
        results = json.loads(stdout)["results"]
        assert [r["metric"] for r in results] == ["latency", "energy"]
        trained = set(doc["fit_networks"])
        assert trained and not trained & {row["model"] for r in results for row in r["rows"]}


@pytest.mark.parametrize("metric", ["latency", "energy"])
def test_held_out_networks_within_15_percent(fitted, metric: str):
    batch, data, result = fitted
    check = validate(data, result.profile, metric=metric)
    assert len(check.rows) == 8  # 12 networks, 4 trained the network term
    assert check.mape <= 0.15, (batch, metric, check.to_dict())
    assert check.max_abs_error <= 0.35, (batch, metric, check.to_dict())


def test_the_model_sees_launch_floors_and_static_power(fitted):
    batch, data, result = fitted
    latency, energy = result.profile.latency_s, result.profile.energy_j
    floors = latency.launch_floor
    # every measured kind gets its floor: 10-35 us per op of eager dispatch on this host
    for kind in ("conv", "linear", "bn", "act", "add", "pool"):
        assert 5e-6 < floors[kind] < 4e-5, (kind, floors[kind])
    assert floors["bn"] > floors["add"]  # batch norm dispatches more than an add
    assert 0 < latency.network_per_op < 2e-5
    # the H100's idle plateau is about 127 W (shared README): the fitted static power sits near it
    assert 100 < energy.static_power_w < 170
    # a big conv is compute bound at both batches: MACs set its time, not the floor
    rows = 10**10 // (256 * 576)  # a 3x3 conv from 64 to 256 channels on that many output pixels
    big = latency.latency_cost("conv", macs=10**10, mem_bytes=10**7, kernels=256, shape=(1, rows, 256))
    assert big > 5 * floors["conv"]
    assert any(w.startswith("launch_floor.norm borrowed") for w in result.warnings)


def test_bad_rows_of_the_real_sweep_are_dropped_not_fatal():
    data = read_sweep(SHARED / "h100_b1.csv")
    result = calibrate(data, name="h100", energy_basis="net")
    dropped = [w for w in result.warnings if w.startswith("dropped")]
    assert len(dropped) == 3 and all("net energy" in w for w in dropped)


def test_shipped_h100_profile_is_this_fit_of_the_shared_sweep():
    shipped = load_board("h100-nvml")
    data = read_sweep(SHARED / "h100_b1.csv")
    assert shipped.fit_quality["csv_sha256"] == data.sha256
    assert shipped.provenance.kind == "measured" and data.sha256 in shipped.provenance.summary
    fresh = calibrate(data, name=shipped.board.name).profile
    for table in ("latency_s", "energy_j"):
        a, b = getattr(shipped, table), getattr(fresh, table)
        assert a.conv_kernel_granularity == b.conv_kernel_granularity
        for key in ("conv_per_mac", "memory_per_byte", "network_per_op", "static_power_w"):
            assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-3, abs=1e-12), (table, key)
