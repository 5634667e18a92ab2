"""``splitprune study``: a declarative grid of runs, on a process pool or a Ray cluster, resumable."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from . import app
from .common import JsonOption, emit_json, people, status

__all__ = ["study"]


@app.command()
def study(
    study_file: Annotated[Path, typer.Argument(help="The study TOML (one [study] table)")],
    out: Annotated[Path, typer.Option(help="Results directory (re-running resumes it)")] = Path("results"),
    executor: Annotated[str, typer.Option(help="local (process pool), ray or sequential")] = "local",
    workers: Annotated[
        int | None, typer.Option(help="Processes (local) or CPUs of a new Ray instance (default: all)")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster: auto or HOST:PORT (default: start a local instance)")
    ] = None,
    retry_failed: Annotated[bool, typer.Option(help="Also rerun jobs that failed before")] = False,
    plots: Annotated[bool, typer.Option(help="Write energy-latency and Pareto plots")] = True,
    json_out: JsonOption = False,
) -> None:
    """Run every job of STUDY_FILE not yet in --out; write Parquet, CSV, a summary and plots."""
    from ..errors import SplitpruneError
    from ..study import load_study, make_executor, run_study

    if workers is not None and workers < 1:
        raise SplitpruneError(f"--workers must be at least 1, got {workers}")
    if ray_address is not None and executor != "ray":
        raise SplitpruneError("--ray-address needs --executor ray")
    spec = load_study(study_file)
    progress = _Progress()
    with _stdout_to_stderr(), make_executor(executor, workers=workers, ray_address=ray_address) as pool:
        with progress:
            report = run_study(spec, out, pool, retry_failed=retry_failed, plots=plots,
                               on_start=progress.start, on_result=progress.advance)
    for job_id, message in report.errors[:10]:
        status.print(f"failed {job_id}: {message}", markup=False, highlight=False)
    if len(report.errors) > 10:
        status.print(f"... and {len(report.errors) - 10} more failures (see {report.files['csv']})")
    if json_out:
        emit_json(report.to_dict())
    else:
        _print_report(report)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what solvers print at the C level (HiGHS's banner) to stderr while jobs run here."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


class _Progress:
    """A rich progress bar on stderr: counts, failures, elapsed and time left."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed, {task.fields[skipped]} skipped"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=status,
        )
        self.task: Any = None
        self.failed = 0

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def start(self, jobs: int, skipped: int) -> None:
        self.task = self.bar.add_task("study", total=jobs - skipped, failed=0, skipped=skipped)

    def advance(self, result: Any) -> None:
        self.failed += result.status == "failed"
        self.bar.update(self.task, advance=1, failed=self.failed)


def _print_report(report: Any) -> None:
    people.print(
        f"{report.jobs} jobs: {report.done} done ({report.infeasible} infeasible), {report.skipped} skipped, "
        f"{report.failed} failed in {report.elapsed_s:.1f} s on {report.executor} ({report.workers} workers)"
    )
    for name, path in report.files.items():
        people.print(f"{name}: {path}")
    summary = report.files.get("summary")
    if summary is not None:
        people.print(Path(summary).read_text(encoding="utf-8"), markup=False, highlight=False)
