"""One question, three ways: ``splitprune split``, a study and the Python API give the same split.

The grid: eager, graph and TensorRT x fp32, fp16 and int8 (int8 with TensorRT only) x two power
modes x two models, on the Xavier NX over 5G at 20 Mbit/s. The objective must agree within 1e-6
relative, and the cut and the bytes sent exactly.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_runner import run_cli

from splitprune import Deployment, split_model
from splitprune.link import load_link
from splitprune.split import SplitOptions
from splitprune.study import StudySpec, run_study
from splitprune.study.executors import LocalExecutor

SMALL = f"{Path(__file__).parent / 'study_data' / 'models.py'}:small"
MODELS = {SMALL: None, "torchvision:mobilenet_v2": [1, 3, 64, 64]}
BOARD, LINK, RATE_BPS = "xavier-nx", "5g", 2e7
POWER_MODES = ("MODE_20W_6CORE", "MODE_10W_4CORE")
DEPLOYMENTS = [
    (mode, precision)
    for mode, precision in itertools.product(("eager", "graph", "tensorrt"), ("fp32", "fp16", "int8"))
    if precision != "int8" or mode == "tensorrt"
]
GRID = list(itertools.product(MODELS, DEPLOYMENTS, POWER_MODES))


def _key(model: str, mode: str, precision: str, power_mode: str) -> tuple[str, str, str, str]:
    return model, mode, precision, power_mode


def _cli_args(model: str, mode: str, precision: str, power_mode: str) -> list[str]:
    args = ["split", model, "--board", BOARD, "--link", LINK, "--rate-bps", str(RATE_BPS), "--mode", mode,
            "--precision", precision, "--power-mode", power_mode, "--json"]
    shape = MODELS[model]
    return args + (["--input-shape", ",".join(map(str, shape))] if shape else [])


def _summary(objective: float, device_nodes: list[str] | str, sent_bytes: int) -> tuple:
    nodes = device_nodes.split(",") if isinstance(device_nodes, str) else device_nodes
    return float(objective), frozenset(nodes), int(sent_bytes)


@pytest.fixture(scope="module")
def api() -> dict[tuple[str, str, str, str], tuple[float, frozenset, int]]:
    """The Python API's answer for every point of the grid."""
    import torch

    from splitprune.models import load_model

    link, out = load_link(LINK), {}
    for model, (mode, precision), power_mode in GRID:
        loaded = load_model(model, device="meta")
        shape = MODELS[model] or loaded.input_shape
        deployed = Deployment.of(BOARD, mode=mode, precision=precision, power_mode=power_mode)
        result = split_model(loaded.module, deployed, link, rate_bps=RATE_BPS, name=model,
                             example=torch.empty(shape, device="meta"),
                             options=SplitOptions(cross_check=True))
        out[_key(model, mode, precision, power_mode)] = _summary(
            result.objective_value, list(result.device_nodes), result.metrics.sent_bytes
        )
    return out


def test_cli_and_python_api_agree_over_the_grid(api):
    for model, (mode, precision), power_mode in GRID:
        run = run_cli(*_cli_args(model, mode, precision, power_mode))
        assert run.code == 0, run.err
        doc = json.loads(run.out)
        got = _summary(doc["objective_value"], doc["device_nodes"], doc["metrics"]["sent_bytes"])
        want = api[_key(model, mode, precision, power_mode)]
        assert math.isclose(got[0], want[0], rel_tol=1e-6), (model, mode, precision, power_mode)
        assert got[1:] == want[1:], (model, mode, precision, power_mode)
        assert doc["wire"] == precision  # the wire travels in the deployment's precision
        assert doc["deployment"]["mode"] == mode and doc["deployment"]["power_mode"] == power_mode


def _study_documents(spec: StudySpec, out: Path, executor: LocalExecutor) -> list[dict]:
    report = run_study(spec, out, executor, plots=False)
    assert report.failed == 0, report.errors
    rows = pq.read_table(report.results).to_pylist()
    docs = []
    for row in rows:
        stored = json.loads((out / "jobs" / f"{row['job_id']}.json").read_text())
        assert stored["status"] == "ok", stored["error"]
        docs.append({**row, "document": stored["document"]})
    return docs


def test_study_rows_equal_the_api_over_the_grid(api, tmp_path):
    docs: list[dict] = []
    # int8 is TensorRT-only: the study lists what each mode can run, in two parts
    parts = ((["eager", "graph", "tensorrt"], ["fp32", "fp16"]), (["tensorrt"], ["int8"]))
    with LocalExecutor(1) as executor:  # one worker process for every study: it starts once
        for (modes, precisions), (model, shape) in itertools.product(parts, MODELS.items()):
            spec = StudySpec(command="split", models=[model], boards=[BOARD], links=[LINK],
                             rates_bps=[RATE_BPS], modes=modes, precisions=precisions,
                             power_modes=list(POWER_MODES), input_shape=shape)
            docs += _study_documents(spec, tmp_path / str(len(docs)), executor)
    assert len(docs) == len(GRID)
    for row in docs:
        doc = row["document"]
        got = _summary(doc["objective_value"], doc["device_nodes"], doc["metrics"]["sent_bytes"])
        want = api[_key(row["model"], row["mode"], row["precision"], row["power_mode"])]
        assert math.isclose(got[0], want[0], rel_tol=1e-6), row["job_id"]
        assert got[1:] == want[1:], row["job_id"]
        assert doc["wire"] == row["precision"]


def test_the_issue_example_runs_as_a_subprocess_and_matches_the_study(tmp_path):
    """The study of the issue (TensorRT fp16 and int8 on the Xavier NX) equals ``splitprune split``."""
    study = tmp_path / "s.toml"
    study.write_text(
        '[study]\ncommand = "split"\nmodels = ["torchvision:mobilenet_v2"]\nboards = ["xavier-nx"]\n'
        'links = ["5g"]\nrates_bps = [2e7]\nmodes = ["tensorrt"]\nprecisions = ["fp16", "int8"]\n'
        "input_shape = [1, 3, 64, 64]\n"
    )
    out = tmp_path / "o"
    run = subprocess.run([sys.executable, "-m", "splitprune", "study", str(study), "--out", str(out),
                          "--executor", "sequential", "--no-plots", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert sorted(r["precision"] for r in rows) == ["fp16", "int8"] and all(r["status"] == "ok" for r in rows)
    for row in rows:
        cli = subprocess.run(
            [sys.executable, "-m", "splitprune", "split", "torchvision:mobilenet_v2", "--board", "xavier-nx",
             "--link", "5g", "--rate-bps", "2e7", "--mode", "tensorrt", "--precision", row["precision"],
             "--input-shape", "1,3,64,64", "--json"], capture_output=True, text=True, timeout=600,
        )
        assert cli.returncode == 0, cli.stderr
        doc = json.loads(cli.stdout)
        assert math.isclose(row["objective_value"], doc["objective_value"], rel_tol=1e-6)
        assert row["metrics.sent_bytes"] == doc["metrics"]["sent_bytes"]
        assert row["wire"] == doc["wire"] == row["precision"]
