"""The Ray executor on a local instance: the local executor's rows, dying workers, failing jobs."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from splitprune.study import StudySpec, expand, run_study
from splitprune.study.executors import LocalExecutor, RayExecutor

ray = pytest.importorskip("ray")

MODELS = Path(__file__).parent / "study_data" / "models.py"
VOLATILE = ("elapsed_s", "solve_time_s")


def _stable(rows):
    return [{k: v for k, v in r.items() if not k.endswith(VOLATILE)} for r in rows]


@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    return tmp_path_factory.mktemp("marker")


@pytest.fixture(scope="module")
def executor(marker):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"SPLITPRUNE_TEST_MARKER_DIR": str(marker)}})
    try:
        yield RayExecutor()  # joins the instance started here
    finally:
        ray.shutdown()


def test_ray_gives_the_local_executors_rows_and_survives_a_failing_job(executor, tmp_path):
    spec = StudySpec(command="split", models=[f"{MODELS}:small", "torchvision:squeezenet1_0",
                                              f"{MODELS}:broken"],
                     boards=["tx2", "xavier-nx"], links=["5g"], rates_bps=[1e6, 1e7])
    on_ray = run_study(spec, tmp_path / "ray", executor, plots=False)
    assert (on_ray.jobs, on_ray.done, on_ray.failed) == (12, 8, 4)
    assert on_ray.executor == "ray" and on_ray.workers == 2
    with LocalExecutor(2) as pool:
        local = run_study(spec, tmp_path / "local", pool, plots=False)
    rows = pq.read_table(on_ray.results).to_pylist()
    assert _stable(rows) == _stable(pq.read_table(local.results).to_pylist())
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 4 and all(r["model"].endswith(":broken") and "cannot be built" in r["error"]
                                    for r in failed)


def test_a_ray_worker_killed_mid_study_loses_nothing(executor, marker, tmp_path):
    spec = StudySpec(command="estimate", models=[f"{MODELS}:small", f"{MODELS}:dies_once"],
                     boards=["tx2", "xavier-nx"], modes=["eager", "graph"])
    report = run_study(spec, tmp_path, executor, plots=False)
    assert (marker / "died").exists()  # the first dies_once task killed its worker
    assert (report.jobs, report.done, report.failed) == (8, 8, 0)
    rows = pq.read_table(report.results).to_pylist()
    assert sorted(r["job_id"] for r in rows) == sorted(j.job_id for j in expand(spec))
    assert {r["status"] for r in rows} == {"ok"}


def test_evaluations_run_as_ray_tasks_with_the_models_file_loaded(executor):
    from splitprune.models import load_model
    from splitprune.study.entry import EntryPoint, PrimedExecutor

    model = load_model(f"{MODELS}:small").module  # its class lives in a file the workers must load
    primed = PrimedExecutor(executor, primers=(f"{MODELS}:small",))
    futures = [primed.submit(EntryPoint(f"{MODELS}:head_width"), model) for _ in range(3)]
    assert [f.result(timeout=120) for f in futures] == [48.0, 48.0, 48.0]
