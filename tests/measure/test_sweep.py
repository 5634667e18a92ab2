from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

import measure.sweep as sweep_module
from measure import NullSensor, SweepError, load_grid, run_sweep
from measure.__main__ import main
from measure.record import COLUMNS, read_rows
from measure.sensors import SampledSensor

GRID = Path(__file__).parent / "data" / "tiny_grid.toml"


class ConstantSensor(SampledSensor):
    """6 W while a window is open; ``bad`` readings are NaN."""

    name = "fake"

    def __init__(self, *, bad: bool = False) -> None:
        super().__init__(interval_s=0.001)
        self.main_rail = "VDD_IN"
        self.bad = bad

    def read_power_w(self) -> dict[str, float]:
        return {"VDD_IN": math.nan if self.bad else 6.0}


def _point_ids(path: Path) -> list[str]:
    return [row["point_id"] for row in read_rows(path)[1]]


def test_sweep_writes_one_complete_row_per_point(tmp_path: Path):
    grid = load_grid(GRID)
    out = tmp_path / "run.csv"
    summary = run_sweep(grid, sensor=NullSensor(), out_path=out, progress=False)
    runs, rows = read_rows(out)
    assert summary.measured == len(grid.points) == len(rows) == 7
    assert sorted(_point_ids(out)) == sorted(p.point_id for p in grid.points)
    assert runs[0]["sensor"] == "none" and runs[0]["device"] == "cpu" and runs[0]["threads"] == 1
    assert runs[0]["grid_sha256"] == grid.sha256
    for row in rows:
        assert row["status"] == "ok"
        assert float(row["latency_s_mean"]) > 0 and float(row["latency_s_std"]) >= 0
        assert row["energy_j_mean"] == ""  # time-only sensor: no energy, not zero
        assert int(row["reps"]) >= 1 and int(row["windows"]) == 2
        assert int(row["copies"]) > 1  # tiny layers cycle through copies (rotate_bytes = 64 KiB)
    conv = next(
        r
        for r in rows
        if r["op"] == "conv" and "kernels=8" in r["point_id"] and "kernel_size=3" in r["point_id"]
    )
    assert (conv["kind"], int(conv["macs"]), int(conv["kernels"])) == ("conv", 8 * 8 * 8 * 4 * 9, 8)


def test_resume_after_crash_loses_and_duplicates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    grid = load_grid(GRID)
    out = tmp_path / "run.csv"
    real = sweep_module.measure_point
    calls = {"n": 0}

    def crash_on_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the process is killed while measuring point 4
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "measure_point", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, sensor=NullSensor(), out_path=out, progress=False)
    done_before = _point_ids(out)
    assert len(done_before) == 3
    with out.open("a") as handle:  # a kill in the middle of a write leaves a torn line
        handle.write("r1,conv:bias=false,groups=1,in_chan")
    before = out.read_bytes()
    monkeypatch.setattr(sweep_module, "measure_point", real)

    summary = run_sweep(grid, sensor=NullSensor(), out_path=out, progress=False)

    ids = _point_ids(out)
    assert sorted(ids) == sorted(p.point_id for p in grid.points)  # nothing lost
    assert len(ids) == len(set(ids))  # nothing duplicated
    assert ids[:3] == done_before  # finished rows untouched, append-only
    assert out.read_bytes().startswith(before[: before.rfind(b"\n") + 1])
    assert (summary.skipped, summary.measured, summary.run_id) == (3, 4, "r2")
    assert [r["run_id"] for r in read_rows(out)[1]] == ["r1"] * 3 + ["r2"] * 4

    again = run_sweep(grid, sensor=NullSensor(), out_path=out, progress=False)
    assert again.measured == 0 and len(_point_ids(out)) == 7


def test_resume_refuses_a_csv_from_other_conditions(tmp_path: Path):
    grid = load_grid(GRID)
    out = tmp_path / "run.csv"
    run_sweep(grid, sensor=NullSensor(), out_path=out, progress=False)
    with pytest.raises(SweepError, match="sensor='none'"):
        run_sweep(grid, sensor=ConstantSensor(), out_path=out, progress=False)


def test_energy_rows_have_gross_net_and_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    grid = load_grid(GRID)
    out = tmp_path / "run.csv"
    monkeypatch.setattr(sweep_module, "_idle_power_w", lambda *args: 4.0)
    method = dataclasses.replace(grid.method, min_samples=1)
    run_sweep(grid, sensor=ConstantSensor(), out_path=out, progress=False, method=method)
    rows = read_rows(out)[1]
    assert all(r["status"] == "ok" for r in rows)
    for row in rows:
        latency_s = float(row["latency_s_mean"])
        assert float(row["idle_power_w"]) == 4.0
        assert float(row["mean_power_w"]) == pytest.approx(6.0)
        assert float(row["energy_j_mean"]) == pytest.approx(6.0 * latency_s)
        assert float(row["net_energy_j_mean"]) == pytest.approx(2.0 * latency_s)
        assert float(row["energy_j_ci95"]) >= 0


def test_non_positive_net_energy_is_flagged(tmp_path: Path):
    grid = load_grid(GRID)
    out = tmp_path / "run.csv"
    method = dataclasses.replace(grid.method, min_samples=1)
    run_sweep(grid, sensor=ConstantSensor(), out_path=out, progress=False, method=method)
    rows = read_rows(out)[1]
    # constant power: nothing above idle, which is not a usable reading
    assert all(r["status"] == "flagged" and "net energy" in r["note"] for r in rows)


def test_bad_readings_are_retried_then_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    grid = load_grid(GRID)
    out = tmp_path / "run.csv"
    attempts = {"n": 0}
    real = sweep_module._attempt

    def count(*args, **kwargs):
        attempts["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "_attempt", count)
    summary = run_sweep(grid, sensor=ConstantSensor(bad=True), out_path=out, progress=False)
    rows = read_rows(out)[1]
    assert summary.flagged == len(rows) == 7
    assert attempts["n"] == 7 * (grid.method.retries + 1)
    assert all(r["status"] == "flagged" and "NaN" in r["note"] for r in rows)


def test_cli_sweep_and_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "cli.csv"
    assert (
        main(["sweep", "--grid", str(GRID), "--out", str(out), "--sensor", "none", "--no-progress", "--json"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["measured"] == 7 and summary["out_path"] == str(out)

    bad = tmp_path / "bad.toml"
    bad.write_text('schema_version = 1\n[provenance]\ndescription = "x"\n[[conv]]\nin_channels = -1\n')
    assert main(["sweep", "--grid", str(bad), "--out", str(out), "--sensor", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1

    assert (
        main(
            [
                "sweep",
                "--grid",
                str(GRID),
                "--out",
                str(out),
                "--sensor",
                "ina3221",
                "--sysfs-root",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "no INA3221" in capsys.readouterr().err

    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    assert main(["sweep", "--grid", str(GRID), "--out", str(foreign), "--sensor", "none"]) == 2
    assert "not a sweep CSV" in capsys.readouterr().err


def test_columns_are_what_calibrate_reads():
    from splitprune.calibrate.data import _NEEDED

    assert set(_NEEDED) <= set(COLUMNS)
