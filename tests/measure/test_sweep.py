from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import pytest
from measure_fakes import ConstantReader

import measure.sweep as sweep_module
from measure import NullSensor, SweepError, load_grid, run_sweep
from measure.__main__ import main
from measure.idle import IdleReading
from measure.record import COLUMNS, read_rows
from measure.sensors import SampledSensor
from measure.window import plan_window

GRID = Path(__file__).parent / "data" / "tiny_grid.toml"
TINY_ONE = Path(__file__).parent / "data" / "tiny_one.toml"


class ConstantSensor(SampledSensor):
    """6 W, read in the sampling process; ``bad`` readings are NaN."""

    name = "fake"

    def __init__(self, *, bad: bool = False) -> None:
        super().__init__(interval_s=0.002)
        self.main_rail = "VDD_IN"
        self.power_w = math.nan if bad else 6.0

    def read_power_w(self) -> dict[str, float]:
        return {"VDD_IN": self.power_w}

    def reader(self) -> ConstantReader:
        return ConstantReader(self.power_w)


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
    monkeypatch.setattr(sweep_module, "_settled_idle", lambda *args: IdleReading(4.0, 0.3, True, 2))
    monkeypatch.setattr(sweep_module, "MIN_RATE_FRACTION", 0.0)  # this machine is shared: not tested here
    method = dataclasses.replace(grid.method, min_samples=1)
    with ConstantSensor() as sensor:
        assert sensor.sampler_kind == "process"
        run_sweep(grid, sensor=sensor, out_path=out, progress=False, method=method)
    runs, rows = read_rows(out)
    assert runs[0]["sensor_sampler"] == "process" and runs[0]["mode"] == "eager"
    assert runs[0]["idle_cold_w"] == pytest.approx(6.0) and runs[0]["idle_settled_w"] == pytest.approx(6.0)
    assert all(r["status"] == "ok" for r in rows)
    for row in rows:
        assert (row["mode"], row["idle_settled"], float(row["idle_settle_s"])) == ("eager", "true", 0.3)
        assert float(row["sample_rate_hz"]) > 0
        latency_s = float(row["latency_s_mean"])
        assert float(row["idle_power_w"]) == 4.0
        assert float(row["mean_power_w"]) == pytest.approx(6.0)
        assert float(row["energy_j_mean"]) == pytest.approx(6.0 * latency_s)
        assert float(row["net_energy_j_mean"]) == pytest.approx(2.0 * latency_s)
        assert float(row["energy_j_ci95"]) >= 0


def test_non_positive_net_energy_is_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sweep_module, "MIN_RATE_FRACTION", 0.0)  # this machine is shared: not tested here
    grid = load_grid(GRID)
    out = tmp_path / "run.csv"
    method = dataclasses.replace(grid.method, min_samples=1)
    with ConstantSensor() as sensor:
        run_sweep(grid, sensor=sensor, out_path=out, progress=False, method=method)
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
    with ConstantSensor(bad=True) as sensor:
        summary = run_sweep(grid, sensor=sensor, out_path=out, progress=False)
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


OLD_COLUMNS = (
    "run_id,point_id,op,kind,network,input_shape,macs,mem_bytes,kernels,reps,copies,windows,samples_min,"
    "status,note,latency_s_mean,latency_s_std,latency_s_ci95,latency_s_median,energy_j_mean,energy_j_std,"
    "energy_j_ci95,energy_j_median,net_energy_j_mean,net_energy_j_std,net_energy_j_ci95,net_energy_j_median,"
    "idle_power_w,mean_power_w"
).split(",")
NEW_COLUMNS = ["mode", "window_s", "sample_rate_hz", "idle_settle_s", "idle_settled"]


def test_new_columns_only_at_the_end():
    assert list(COLUMNS) == OLD_COLUMNS + NEW_COLUMNS


def test_time_only_rows_have_the_new_columns(tmp_path: Path):
    out = tmp_path / "run.csv"
    run_sweep(load_grid(GRID), sensor=NullSensor(), out_path=out, progress=False)
    runs, rows = read_rows(out)
    assert runs[0]["mode"] == "eager" and runs[0]["method"]["mode"] == "eager"
    assert runs[0]["window_target_s"] == pytest.approx(load_grid(GRID).method.window_s)
    for row in rows:
        assert row["mode"] == "eager" and float(row["window_s"]) >= load_grid(GRID).method.window_s
        assert row["sample_rate_hz"] == row["idle_settled"] == ""  # no sensor: nothing sampled


def test_energy_run_header_records_the_sensor_facts(tmp_path: Path):
    out = tmp_path / "run.csv"
    grid = load_grid(TINY_ONE)
    lines: list[str] = []
    with ConstantSensor() as sensor:
        run_sweep(grid, sensor=sensor, out_path=out, progress=False, report=lines.append)
    header = read_rows(out)[0][0]
    assert len(lines) == 1 and "sensor updates every 2.0 ms (power)" in lines[0]
    assert "idle 6.00 W cold, 6.00 W settled" in lines[0]
    assert header["sensor_update_source"] == "power" and header["sensor_has_energy_counter"] == "false"
    assert header["sensor_update_period_s"] == pytest.approx(0.002)  # never changes: the interval
    assert header["sensor_sample_rate_hz"] > 0
    assert header["window_target_s"] == pytest.approx(20 * 0.002)  # 20 refreshes (min_samples: 3)
    assert header["window_quantisation"] == pytest.approx(1 / 20)
    assert header["idle_cold_w"] == header["idle_settled_w"] == pytest.approx(6.0)
    assert header["idle_settled"] is True and header["net_energy_reference"] == "settled idle"


def test_counter_sensor_energy_through_a_whole_point():
    """A counter that ticks every 10 ms read in the sampling process: energy = 80 W x latency."""
    from test_sampler import _CounterSensor

    grid = load_grid(TINY_ONE)
    method = dataclasses.replace(grid.method, windows=3)
    plan = plan_window(window_s=0.3, update_period_s=0.01, sample_interval_s=0.001, has_counter=True)
    with _CounterSensor(tick_s=0.01) as sensor:
        row = sweep_module.measure_point(grid.points[0], method, sensor, plan)
    # constant power: the gross energy is 80 W x latency. The 1 % bound is
    # test_window's (exact timing); here the sampling process shares two loaded cores, so a stalled
    # reading next to a tick can shift an edge by milliseconds.
    for window in ("mean", "median"):
        assert float(row[f"energy_j_{window}"]) == pytest.approx(80.0 * row[f"latency_s_{window}"], rel=0.05)
    assert row["window_s"] >= plan.target_s - 0.012  # tick to tick, at least the target less a tick
    # net energy is ~0 (constant power) and may be flagged; never for samples: a counter needs none
    assert row["note"] in ("", "net energy <= 0 (power not above settled idle)")


class SlowSensor(SampledSensor):
    """Asks for 500 readings a second but a reading takes 20 ms: the integral would be biased."""

    name = "slow"

    def __init__(self) -> None:
        super().__init__(interval_s=0.002, sampler="thread")
        self.main_rail = "VDD_IN"
        self.t0_s = time.perf_counter()

    def read_power_w(self) -> dict[str, float]:
        time.sleep(0.02)
        return {"VDD_IN": 6.0 + (time.perf_counter() - self.t0_s)}  # rising: never net <= 0


def test_a_starved_sampler_without_counter_is_flagged():
    grid = load_grid(TINY_ONE)
    method = dataclasses.replace(grid.method, min_samples=1)
    with SlowSensor() as sensor:
        row = sweep_module.measure_point(grid.points[0], method, sensor)
    assert row["status"] == "flagged"
    assert row["note"].startswith(("sampler starved", "only"))  # too slow a rate, or too few samples
    assert not float(row["sample_rate_hz"]) >= 60  # NaN: not one sample came in, the most starved of all


def test_graph_mode_is_refused_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    grid = load_grid(GRID)
    method = dataclasses.replace(grid.method, mode="graph")
    with pytest.raises(SweepError, match="mode graph needs CUDA graphs"):
        run_sweep(grid, sensor=NullSensor(), out_path=tmp_path / "g.csv", progress=False, method=method)
    assert not (tmp_path / "g.csv").exists()
    args = [
        "sweep",
        "--grid",
        str(GRID),
        "--out",
        str(tmp_path / "g.csv"),
        "--sensor",
        "none",
        "--mode",
        "graph",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--mode eager" in err
    with pytest.raises(SweepError, match="mode graph"):
        sweep_module.measure_point(grid.points[0], method, NullSensor())


def test_resume_refuses_another_mode_and_an_older_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "run.csv"
    grid = load_grid(GRID)
    run_sweep(grid, sensor=NullSensor(), out_path=out, progress=False)
    monkeypatch.setattr(sweep_module, "check_method", lambda method: None)  # pretend a GPU is here
    with pytest.raises(SweepError, match="mode='eager'"):
        graph = dataclasses.replace(grid.method, mode="graph")
        run_sweep(grid, sensor=NullSensor(), out_path=out, progress=False, method=graph)
    old = tmp_path / "old.csv"
    text = out.read_text().replace(",".join(COLUMNS), ",".join(OLD_COLUMNS))
    old.write_text(
        "\n".join(line.rsplit(",", 5)[0] if line.startswith("r1,") else line for line in text.splitlines())
        + "\n"
    )
    assert len(read_rows(old)[1]) == 7  # an older CSV still reads
    with pytest.raises(SweepError, match="older measure"):
        run_sweep(grid, sensor=NullSensor(), out_path=old, progress=False)


def test_cli_batch_override_resizes_layers_and_networks(tmp_path: Path):
    grid = load_grid(GRID).with_batch(3)
    assert grid.method.batch == 3
    out = tmp_path / "b3.csv"
    assert (
        main(
            [
                "sweep",
                "--grid",
                str(GRID),
                "--out",
                str(out),
                "--sensor",
                "none",
                "--no-progress",
                "--batch",
                "3",
            ]
        )
        == 0
    )
    runs, rows = read_rows(out)
    assert runs[0]["batch"] == 3
    assert all(row["input_shape"].startswith("3x") for row in rows)


def test_a_point_that_cannot_be_captured_is_flagged_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    calls: list[int] = []

    def fail_on_the_second_point(call, *, mode, device, copies, network):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("operation not permitted when stream is capturing\nmore text")
        return call, 1

    monkeypatch.setattr(sweep_module, "make_runner", fail_on_the_second_point)
    out = tmp_path / "run.csv"
    summary = run_sweep(load_grid(GRID), sensor=NullSensor(), out_path=out, progress=False)
    rows = read_rows(out)[1]
    assert summary.measured == 7 and summary.flagged == 1
    bad = next(r for r in rows if r["status"] == "flagged")
    assert bad["note"] == "CUDA graph capture failed (operation not permitted when stream is capturing)"
    assert bad["latency_s_median"] == "" and bad["macs"] != ""

    from splitprune.calibrate import read_sweep

    data = read_sweep(out)  # calibrate reads the flagged row and leaves it out of the data
    assert len(data.rows) == 7 and len(data.layer_rows) == 6
