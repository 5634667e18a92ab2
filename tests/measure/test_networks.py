"""``python -m measure networks``: the CSV format, resuming, refusals, power columns and trtexec."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from measure_fakes import gpu_power_w, make_hwmon_tree, total_power_w

from measure import SweepError
from measure.__main__ import main
from measure.network_csv import COLUMNS, NetworkCsv
from measure.networks import board_name, resolve_power_mode
from measure.tensorrt import JETSON_TRTEXEC, parse_trtexec_log

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
TINY = f"{DATA / 'tiny_net.py'}:tiny"
# Short windows: the tests check what is written, not how precise it is.
FAST = ["--windows", "2", "--window-s", "0.1", "--warmup-s", "0.05", "--idle-s", "0.1", "--probe-s", "0.1"]


def _measure(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "measure", "networks", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
        check=False,
    )


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _published_header() -> list[str]:
    return _rows(REPO / "data" / "jetson_published" / "networks.csv")[0]


def test_columns_are_those_of_the_published_file():
    assert list(COLUMNS) == _published_header()


def test_cpu_eager_rows_and_resume(tmp_path: Path):
    out = tmp_path / "networks.csv"
    args = ["--models", TINY, "--batch", "1,3", "--sensor", "none", "--device", "cpu", "--input-hw", "32"]
    args += ["--power-mode", "MAXN", "--out", str(out), *FAST]
    first = _measure(*args)
    assert first.returncode == 0, first.stderr
    header, rows = _rows(out)
    assert header == list(COLUMNS)
    assert [int(row["batch"]) for row in rows] == [1, 3]
    for row in rows:
        assert (row["runtime"], row["precision"], row["unit"], row["input_hw"]) == (
            "pytorch-eager",
            "fp32",
            "cpu",
            "32",
        )
        assert row["model"] == TINY and row["source"].startswith(
            "measured by splitprune measure networks on "
        )
        assert row["power_mode"] in ("MAXN", _nvpmodel_here())
        assert 0 < float(row["latency_ms"]) < 1e4
        # a time-only sensor leaves every power column empty, never zero
        assert [row[c] for c in ("gpu_latency_ms", "power_w", "idle_power_w", "energy_mj_per_image")] == [
            ""
        ] * 4
    text = out.read_text()

    again = _measure(*args, "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["measured"], summary["skipped"], summary["runtime"]) == (0, 2, "pytorch-eager")
    assert out.read_text() == text  # nothing added, nothing rewritten

    more = _measure(*[a if a != "1,3" else "1,2,3" for a in args], "--json")
    assert (json.loads(more.stdout)["measured"], json.loads(more.stdout)["skipped"]) == (1, 2)
    assert [int(row["batch"]) for row in _rows(out)[1]] == [1, 3, 2]


def _nvpmodel_here() -> str:
    from measure.record import _nvpmodel

    return _nvpmodel()


def test_graph_mode_on_cpu_is_refused_in_one_line(tmp_path: Path):
    out = tmp_path / "n.csv"
    result = _measure(
        "--models", TINY, "--mode", "graph", "--device", "cpu", "--sensor", "none", "--out", str(out)
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "error: --mode graph needs CUDA graphs"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precision", "int8"], "error: int8 is measured through TensorRT only"),
        (["--precision", "fp16", "--device", "cpu"], "error: fp16 is measured on cuda only"),
        (["--batch", "1,x"], "error: --batch '1,x' is not a list of integers"),
        (["--input-hw", "big"], "error: --input-hw 'big' is not a size"),
        (
            ["--models", "torchvision:no_such_net"],
            "error: model 'torchvision:no_such_net': torchvision has no",
        ),
    ],
)
def test_user_mistakes_are_one_line(extra, message, tmp_path: Path, capsys):
    args = [
        "networks",
        "--models",
        TINY,
        "--sensor",
        "none",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "n.csv"),
    ]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_tensorrt_without_torch_tensorrt_or_trtexec_is_refused(tmp_path: Path):
    from importlib.util import find_spec

    if find_spec("torch_tensorrt") is not None or JETSON_TRTEXEC.is_file():
        pytest.skip("this machine has TensorRT")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no trtexec on it
    result = _measure(
        "--models", TINY, "--mode", "tensorrt", "--sensor", "none", "--out", str(tmp_path / "n.csv"), env=env
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --mode tensorrt needs torch-tensorrt or trtexec; install ")
    assert "or use --mode eager" in result.stderr


def _fake_ina3221(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    root.mkdir()
    make_hwmon_tree(root, {"VDD_IN": total_power_w, "VDD_SYS_GPU": gpu_power_w})  # files hold t=0: 5 W in
    return root


def test_power_columns_from_a_fake_ina3221(tmp_path: Path):
    out = tmp_path / "networks.csv"
    root = _fake_ina3221(tmp_path)
    result = _measure(
        "--models", TINY, "--batch", "4", "--device", "cpu", "--input-hw", "16", "--sensor", "ina3221",
        "--sysfs-root", str(root), "--out", str(out), *FAST,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = _rows(out)[1]
    power_w, latency_ms = float(row["power_w"]), float(row["latency_ms"])
    assert power_w == pytest.approx(total_power_w(0.0))  # VDD_IN, not the GPU rail (2 W)
    assert float(row["idle_power_w"]) == pytest.approx(total_power_w(0.0))
    assert float(row["energy_mj_per_image"]) == pytest.approx(power_w * latency_ms / 4, rel=1e-4)
    assert "VDD_IN" in row["power_scope"] and "INA3221" in row["power_scope"]


def _install_fake_trtexec(tmp_path: Path) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    trtexec = bin_dir / "trtexec"
    trtexec.write_text(f"#!{sys.executable}\n" + (Path(__file__).parent / "fake_trtexec.py").read_text())
    trtexec.chmod(trtexec.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls.jsonl"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_TRTEXEC_CALLS": str(calls),
        "FAKE_TRTEXEC_TEXT": str(DATA / "trtexec_run.log"),
    }
    return env, calls


def test_tensorrt_through_trtexec_on_path(tmp_path: Path):
    env, calls = _install_fake_trtexec(tmp_path)
    out = tmp_path / "networks.csv"
    result = _measure(
        "--models", TINY, "--batch", "2", "--mode", "tensorrt", "--precision", "int8", "--input-hw", "16",
        "--tensorrt-backend", "trtexec", "--sensor", "ina3221", "--sysfs-root", str(_fake_ina3221(tmp_path)),
        "--out", str(out), *FAST, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = _rows(out)[1]
    build, timing = (json.loads(line) for line in calls.read_text().splitlines())
    assert "--int8" in build and any(a.startswith("--onnx=") for a in build)
    assert any(a.startswith("--loadEngine=") for a in timing) and "--int8" not in timing
    logged = parse_trtexec_log((DATA / "trtexec_run.log").read_text())
    assert (row["runtime"], row["precision"], row["unit"], row["batch"]) == ("tensorrt", "int8", "gpu", "2")
    assert float(row["latency_ms"]) == pytest.approx(logged.latency_ms)
    assert float(row["gpu_latency_ms"]) == pytest.approx(logged.gpu_latency_ms)
    assert float(row["power_w"]) == pytest.approx(total_power_w(0.0))
    assert float(row["energy_mj_per_image"]) == pytest.approx(
        float(row["power_w"]) * logged.latency_ms / 2, rel=1e-4
    )
    assert "random dynamic ranges" in row["note"] and "8.5.2" in row["note"]


def test_parse_trtexec_summary():
    times = parse_trtexec_log((DATA / "trtexec_run.log").read_text())
    # the summary's means, not the trace averages, the H2D/D2H latencies or the totals
    assert (times.latency_ms, times.gpu_latency_ms, times.throughput_qps) == (1.2301, 1.1523, 811.42)
    assert times.tensorrt_version == "8.5.2"


def test_parse_trtexec_7_log_and_failures():
    old = "\n".join(
        [
            "&&&& RUNNING TensorRT.trtexec # ./trtexec --loadEngine=a.engine",
            "[06/01/2020-10:00:05] [I] Host Latency",
            "[06/01/2020-10:00:05] [I] min: 2.1 ms (end to end 2.2 ms)",
            "[06/01/2020-10:00:05] [I] mean: 2.375 ms (end to end 2.5 ms)",
            "[06/01/2020-10:00:05] [I] GPU Compute",
            "[06/01/2020-10:00:05] [I] min: 1.9 ms",
            "[06/01/2020-10:00:05] [I] mean: 2.0625 ms",
        ]
    )
    times = parse_trtexec_log(old)
    assert (times.latency_ms, times.gpu_latency_ms, times.throughput_qps) == (2.375, 2.0625, None)
    failed = "[12/01/2026-20:00:00] [E] Engine deserialization failed\n&&&& FAILED TensorRT.trtexec"
    with pytest.raises(SweepError, match="trtexec gave no latency"):
        parse_trtexec_log(failed)


def test_board_and_power_mode_names():
    assert board_name("NVIDIA Jetson AGX Orin Developer Kit") == "jetson-agx-orin"
    assert board_name("NVIDIA Orin Nano Developer Kit") == "jetson-orin-nano"
    assert board_name("NVIDIA Jetson Nano Developer Kit") == "jetson-nano"
    assert board_name("AMD EPYC 9654") == "AMD EPYC 9654"
    warnings: list[str] = []
    assert resolve_power_mode("MAXN", "15W", warnings.append) == "MAXN" and "15W" in warnings[0]
    assert resolve_power_mode("not readable", "15W", warnings.append) == "15W"
    assert resolve_power_mode("not readable", None, warnings.append) == "not stated"


def test_a_foreign_csv_is_refused(tmp_path: Path):
    other = tmp_path / "sweep.csv"
    other.write_text("run_id,point_id\nr1,x\n")
    with pytest.raises(SweepError, match="is not a networks CSV"):
        NetworkCsv(other)
    assert other.read_text() == "run_id,point_id\nr1,x\n"


def test_backend_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import measure.tensorrt as trt

    installed = {"torch_tensorrt", "onnx"}
    monkeypatch.setattr(trt, "find_spec", lambda name: object() if name in installed else None)
    trtexec = tmp_path / "trtexec"
    trtexec.write_text("")
    assert trt.pick_backend("auto", precision="fp16", trtexec=trtexec) == "torch-tensorrt"
    assert trt.pick_backend("auto", precision="int8", trtexec=trtexec) == "trtexec"  # int8 needs calibration
    assert trt.pick_backend("trtexec", precision="fp32", trtexec=trtexec) == "trtexec"
    with pytest.raises(SweepError, match="int8 through torch-tensorrt needs calibration"):
        trt.pick_backend("torch-tensorrt", precision="int8", trtexec=None)
    installed.discard("onnx")
    with pytest.raises(SweepError, match="pip install onnx"):
        trt.pick_backend("auto", precision="int8", trtexec=trtexec)
    installed.discard("torch_tensorrt")
    with pytest.raises(SweepError, match="needs torch-tensorrt or trtexec"):
        trt.pick_backend("auto", precision="fp16", trtexec=None)
    with pytest.raises(SweepError, match="is not a file"):
        trt.find_trtexec(tmp_path / "missing")


def test_torch_tensorrt_compiles_then_times_like_eager(monkeypatch: pytest.MonkeyPatch):
    import types

    import torch

    import measure.networks as networks
    from measure import NullSensor
    from measure.grid import Method
    from measure.models import load_network
    from measure.sensor_facts import time_only_plan

    compiled: list[dict] = []

    def compile(module, *, inputs, enabled_precisions):  # what torch_tensorrt.compile receives
        compiled.append({"shape": tuple(inputs[0].shape), "precisions": enabled_precisions})
        return module

    monkeypatch.setitem(sys.modules, "torch_tensorrt", types.SimpleNamespace(compile=compile))
    method = Method(device="cpu", windows=2, window_s=0.05, warmup_s=0.0)
    options = networks.NetworkOptions(models=(TINY,), batches=(2,), mode="tensorrt", method=method)
    values = networks._torch_row(load_network(TINY), 2, (8, 8), options, NullSensor(), time_only_plan(0.05))
    assert compiled == [{"shape": (2, 3, 8, 8), "precisions": {torch.float32}}]
    assert values["latency_ms"] > 0 and values["power_w"] is None
    assert values["note"].startswith("torch-tensorrt compile; 2 windows")
