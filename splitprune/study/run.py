"""Running a whole study: skip what is done, run the rest on an executor, write the tables.

Jobs run in two phases. Ordinary jobs go to the executor all at once and are saved as they finish.
``plan`` jobs with an ``evaluate`` entry point then run here, one at a time, with their candidate
pruned models fine-tuned and scored on the executor's workers (the fine-tuning is what costs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .executors import Executor
from .jobs import JobResult, run_job
from .spec import Job, StudySpec, expand
from .store import ResultStore

__all__ = ["SCHEMA", "StudyReport", "run_study"]

SCHEMA = "splitprune.study/1"


@dataclass(frozen=True)
class StudyReport:
    """What one ``splitprune study`` invocation did.

    Attributes:
        jobs: Jobs in the study.
        done: Jobs run now that finished (``ok`` or ``infeasible``).
        skipped: Jobs whose result an earlier run had stored.
        failed: Jobs run now that failed.
        infeasible: Of ``done``, the jobs whose budget no solution meets.
        results: The Parquet file of all rows.
        files: Every table and plot written (name -> path).
        executor: The executor's name; workers: how many jobs it ran at once.
        elapsed_s: Wall-clock time of the invocation, s.
        errors: ``(job_id, message)`` of the jobs that failed now.
    """

    jobs: int
    done: int
    skipped: int
    failed: int
    infeasible: int
    results: Path
    files: dict[str, Path]
    executor: str
    workers: int
    elapsed_s: float
    errors: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The ``splitprune study --json`` document (schema ``splitprune.study/1``)."""
        return {
            "schema": SCHEMA, "jobs": self.jobs, "done": self.done, "skipped": self.skipped,
            "failed": self.failed, "infeasible": self.infeasible, "results": str(self.results),
            "files": {k: str(v) for k, v in self.files.items()}, "executor": self.executor,
            "workers": self.workers, "elapsed_s": self.elapsed_s,
            "errors": [{"job_id": j, "error": e} for j, e in self.errors],
        }


def run_study(
    spec: StudySpec,
    out: Path,
    executor: Executor,
    *,
    retry_failed: bool = False,
    plots: bool = True,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[JobResult], None] | None = None,
) -> StudyReport:
    """Run every job of ``spec`` that has no stored result under ``out``; write tables and plots.

    Args:
        spec: The validated study.
        out: The results directory.
        executor: Where the jobs run.
        retry_failed: Also rerun jobs whose stored result is ``failed``.
        plots: Write the plots (matplotlib) next to the tables.
        on_start: Called with (jobs, skipped) before anything runs (for progress bars).
        on_result: Called after each job's result is saved.
    """
    started = time.perf_counter()
    store = ResultStore(out)
    jobs = expand(spec)
    todo = [job for job in jobs if not store.has(job.job_id, retry_failed=retry_failed)]
    skipped = len(jobs) - len(todo)
    if on_start is not None:
        on_start(len(jobs), skipped)
    local = [j for j in todo if _in_driver(j)]
    outcomes: list[JobResult] = []

    def keep(result: JobResult) -> None:
        store.save(result)
        outcomes.append(result)
        if on_result is not None:
            on_result(result)

    for result in executor.run([j for j in todo if not _in_driver(j)]):
        keep(result)
    for job in local:
        keep(run_job(job, executor))
    rows = store.rows(jobs)
    files = store.write_tables(rows)
    if plots:
        from ..plots.study import plot_study

        files.update(plot_study(rows, out))
    failed = [r for r in outcomes if r.status == "failed"]
    return StudyReport(
        jobs=len(jobs), done=len(outcomes) - len(failed), skipped=skipped, failed=len(failed),
        infeasible=sum(1 for r in outcomes if r.status == "infeasible"), results=files["parquet"],
        files=files, executor=executor.name, workers=executor.workers,
        elapsed_s=time.perf_counter() - started,
        errors=tuple((r.job_id, r.error or "") for r in failed),
    )


def _in_driver(job: Job) -> bool:
    """A plan that fine-tunes runs here and spreads its evaluations over the executor."""
    return job.command == "plan" and job.options.get("evaluate") is not None
