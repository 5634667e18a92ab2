"""The new code against the real H100 NVML sweeps shipped in data/h100."""

from __future__ import annotations

from pathlib import Path

import pytest

from measure import NvmlSensor, load_grid
from measure.layers import LAYERS
from measure.record import read_rows

CSVS = ("h100_b1.csv", "h100_b16.csv")


@pytest.mark.parametrize("name", CSVS)
def test_the_shared_csvs_still_read(h100_data: Path, name: str):
    runs, rows = read_rows(h100_data / name)
    assert len(rows) == 106 and runs[0]["sensor"] == "nvml"
    assert "mode" not in rows[0]  # older columns: the new ones are absent, not invented


@pytest.fixture
def nvml(mocker):
    mocker.patch("pynvml.nvmlInit", autospec=True)
    mocker.patch("pynvml.nvmlShutdown", autospec=True)
    mocker.patch("pynvml.nvmlDeviceGetHandleByIndex", autospec=True, return_value="gpu-handle")
    mocker.patch("pynvml.nvmlDeviceGetPowerUsage", autospec=True, return_value=71_000)
    mocker.patch("pynvml.nvmlDeviceGetTotalEnergyConsumption", autospec=True, return_value=1_000)
    return mocker


def test_nvml_header_keys_match_the_real_h100_header(h100_data: Path, nvml):
    real = read_rows(h100_data / "h100_b1.csv")[0][0]
    with NvmlSensor(index=0) as sensor:
        described = sensor.describe()
    for key in ("sensor", "sensor_main_rail", "sensor_rails", "sensor_energy_source"):
        assert described[key] == real[key], key
    assert {k for k in real if k.startswith("sensor")} <= set(described)
    assert described["sensor_has_energy_counter"] == "true" and described["sensor_sampler"] == "process"
    # the counter is read at every sample now: 500 a second, not the 100 of the old power-only thread
    assert float(described["sensor_interval_s"]) < float(real["sensor_interval_s"])


def test_batch_override_reproduces_the_batch_16_grid(h100_data: Path):
    b1, b16 = load_grid(h100_data / "h100_b1.toml"), load_grid(h100_data / "h100_b16.toml")
    assert [p.point_id for p in b1.with_batch(16).points] == [p.point_id for p in b16.points]
    assert b1.with_batch(16).method == b16.method


@pytest.mark.parametrize("name", CSVS)
def test_layer_counts_reproduce_the_shared_rows(h100_data: Path, name: str):
    """The counts the fit uses do not change for the CNN kinds measured before."""
    grid = load_grid(h100_data / name.replace(".csv", ".toml"))
    points = {p.point_id: p for p in grid.points}
    rows = [r for r in read_rows(h100_data / name)[1] if r["op"] != "network"]
    assert len(rows) == 94
    for row in rows:
        counts = LAYERS[row["op"]].count(points[row["point_id"]].params, grid.method.batch, 4)
        assert (counts.kind, counts.macs, counts.mem_bytes, counts.kernels) == (
            row["kind"],
            int(row["macs"]),
            int(row["mem_bytes"]),
            int(row["kernels"]),
        ), row["point_id"]
        assert "x".join(map(str, counts.input_shape)) == row["input_shape"]
