"""splitprune study: spec expansion, executors giving the same rows, resume, failures, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_runner import run_cli

from splitprune.board import load_board
from splitprune.study import StudySpec, expand, load_study, run_study
from splitprune.study.executors import LocalExecutor, SequentialExecutor
from splitprune.study.store import ResultStore

MODELS = Path(__file__).parent / "study_data" / "models.py"
SPLIT = {"command": "split", "models": ["torchvision:squeezenet1_0", f"{MODELS}:small"],
         "boards": ["tx2", "xavier-nx"], "links": ["5g", "wifi"], "rates_bps": [1e6, 1e7]}
VOLATILE = ("elapsed_s", "solve_time_s", "search.elapsed_s")


def _stable(rows):
    return [{k: v for k, v in r.items() if not k.endswith(VOLATILE)} for r in rows]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    os.environ["SPLITPRUNE_TEST_MARKER_DIR"] = str(tmp_path_factory.mktemp("marker"))
    with LocalExecutor(2) as executor:
        yield executor
    os.environ.pop("SPLITPRUNE_TEST_MARKER_DIR", None)


def test_lists_expand_as_a_product_with_stable_ids():
    jobs = expand(StudySpec(**SPLIT))
    assert len(jobs) == 2 * 2 * 2 * 2
    assert len({j.job_id for j in jobs}) == len(jobs)
    assert [j.job_id for j in expand(StudySpec(**SPLIT))] == [j.job_id for j in jobs]
    other = expand(StudySpec(**{**SPLIT, "wire": "fp16"}))
    assert not {j.job_id for j in other} & {j.job_id for j in jobs}  # a setting is part of the id
    assert {(j.objective, j.budget) for j in jobs} == {("energy", None)}


@pytest.mark.parametrize(("text", "message"), [
    ('command = "estimate"\nmodels = ["torchvision:resnet18"]\nlinks = ["wifi"]', "links does not apply"),
    ('command = "split"\nmodels = ["torchvision:resnet18"]\nlinks = ["wifi"]\nlinkz = 1', "unknown key"),
    ('command = "estimate"\nmodels = ["torchvision:resnet18"]\nprecisions = ["int8"]',
     "int8 needs a quantising"),
    ('command = "estimate"\nmodels = ["torchvision:resnet18"]\npower_modes = ["15W"]',
     "has no power mode '15W'"),
    ('command = "plan"\nmodels = ["torchvision:resnet18"]\nlinks = ["wifi"]', "needs budgets"),
    ('command = "split"\nmodels = ["torchvision:resnet18"]\nlinks = ["wifi"]\nbudgets = ["5kg"]',
     "bad budget"),
])
def test_bad_study_files_fail_with_one_line(tmp_path, text, message):
    path = tmp_path / "study.toml"
    path.write_text("[study]\n" + text + "\n")
    with pytest.raises(Exception, match=message):
        load_study(path)
    run = run_cli("study", str(path), "--out", str(tmp_path / "out"), "--executor", "sequential")
    assert run.code == 2 and run.err.startswith("error: ") and len(run.err.strip().splitlines()) == 1


def test_profile_precision_and_power_mode_are_accepted(tmp_path):
    path = tmp_path / "study.toml"
    own = load_board("tx2").board
    path.write_text(f'[study]\ncommand = "estimate"\nmodels = ["torchvision:resnet18"]\n'
                    f'precisions = ["{own.precision}"]\npower_modes = ["{own.power_mode}"]\n')
    (job,) = expand(load_study(path))
    assert (job.precision, job.power_mode) == (own.precision, own.power_mode)


def test_local_pool_gives_the_sequential_rows_and_a_failing_job_is_recorded(pool, tmp_path):
    spec = StudySpec(**{**SPLIT, "models": [*SPLIT["models"], f"{MODELS}:broken"]})
    local = run_study(spec, tmp_path / "local", pool, plots=False)
    serial = run_study(spec, tmp_path / "serial", SequentialExecutor(), plots=False)
    assert (local.jobs, local.done, local.failed) == (24, 16, 8)
    rows = pq.read_table(local.results).to_pylist()
    assert _stable(rows) == _stable(pq.read_table(serial.results).to_pylist())
    assert [r["job_id"] for r in rows] == [j.job_id for j in expand(spec)]
    broken = [r for r in rows if r["model"].endswith(":broken")]
    assert {r["status"] for r in broken} == {"failed"}
    assert all("cannot be built" in r["error"] and "\n" not in r["error"] for r in broken)
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["energy_j"] == r["metrics.total_energy_j"] > 0 for r in ok)


def test_resume_skips_done_jobs_and_redoes_a_missing_one(pool, tmp_path):
    spec = StudySpec(command="estimate", models=["torchvision:squeezenet1_0", f"{MODELS}:small"],
                     boards=["tx2", "xavier-nx"], modes=["eager", "graph"])
    first = run_study(spec, tmp_path, pool)
    assert (first.jobs, first.done, first.skipped) == (8, 8, 0)
    assert {"energy_latency", "pareto", "summary", "csv"} <= set(first.files)
    store = ResultStore(tmp_path)
    lost = expand(spec)[3].job_id
    store.path(lost).unlink()  # as if the study had been killed before this job finished
    (tmp_path / "jobs" / f".{lost}.json.123.tmp").write_text('{"half": ')  # a write cut short
    again = run_study(spec, tmp_path, pool, plots=False)
    assert (again.done, again.skipped, again.failed) == (1, 7, 0)
    rows = pq.read_table(again.results).to_pylist()
    assert sorted(r["job_id"] for r in rows) == sorted(j.job_id for j in expand(spec))
    assert all(r["status"] == "ok" and r["energy_j"] == r["total_energy_j"] > 0 for r in rows)
    csv_lines = (tmp_path / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(rows)


def test_a_worker_killed_mid_study_loses_nothing(pool, tmp_path):
    spec = StudySpec(command="estimate", models=[f"{MODELS}:small", f"{MODELS}:dies_once",
                                                 "torchvision:squeezenet1_0"], boards=["tx2", "xavier-nx"])
    report = run_study(spec, tmp_path, pool, plots=False)
    assert (report.jobs, report.done, report.failed) == (6, 6, 0)
    assert (Path(os.environ["SPLITPRUNE_TEST_MARKER_DIR"]) / "died").exists()  # a worker did die
    rows = pq.read_table(report.results).to_pylist()
    assert len({r["job_id"] for r in rows}) == 6 and {r["status"] for r in rows} == {"ok"}


def test_cli_json_and_resume_after_the_driver_is_killed(tmp_path):
    path = tmp_path / "study.toml"
    models = ", ".join(f'"torchvision:{m}"' for m in ("squeezenet1_0", "resnet18", "mobilenet_v2",
                                                       "alexnet", "resnet34", "vgg11"))
    path.write_text(f'[study]\ncommand = "estimate"\nmodels = [{models}]\nboards = ["tx2", "xavier-nx"]\n')
    out = tmp_path / "out"
    command = [sys.executable, "-m", "splitprune", "study", str(path), "--out", str(out), "--json",
               "--executor", "sequential", "--no-plots"]
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "jobs").glob("*.json"))) < 2:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finished = len(list((out / "jobs").glob("*.json")))
    assert 2 <= finished < 12
    run = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)  # stdout is exactly one JSON document
    assert document["schema"] == "splitprune.study/1"
    assert document["jobs"] == 12 and document["skipped"] == finished
    assert document["done"] + document["skipped"] == 12 and document["failed"] == 0
    rows = pq.read_table(document["results"]).to_pylist()
    assert len(rows) == 12 and len({r["job_id"] for r in rows}) == 12


def test_gpus_are_asked_for_by_fine_tuning_only():
    from splitprune.study.executors import resources

    common = {"models": ["torchvision:resnet18"], "evaluate": "pkg.mod:fn", "evaluate_gpus": 1}
    (prune,) = expand(StudySpec(command="prune", budgets=[0.5], **common))
    (plan,) = expand(StudySpec(command="plan", links=["wifi"], budgets=[0.5], **common))
    (split,) = expand(StudySpec(command="split", models=["torchvision:resnet18"], links=["wifi"]))
    assert resources(prune) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert resources(plan)["num_gpus"] == 0 and plan.needs_gpu == 1  # its evaluation tasks ask
    assert resources(split)["num_gpus"] == 0
