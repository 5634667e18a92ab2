"""Where study jobs run, behind one small interface (as Ray Tune hides its trial executors).

An :class:`Executor` runs jobs and yields their results as they finish (:meth:`Executor.run`), and
takes single calls (:meth:`Executor.submit`, a :class:`concurrent.futures.Future`) for the planner's
parallel fine-tune-and-evaluate. Three implementations:

- :class:`SequentialExecutor`: every job in this process, one after another (the reference).
- :class:`LocalExecutor`: a process pool (spawn context, sized to the machine). Workers live for the
  whole study, so each pays the torch import once. A worker that dies takes its in-flight jobs with
  it: the pool is rebuilt and those jobs are run again, up to ``attempts`` times each.
- :class:`RayExecutor`: the same jobs as Ray tasks on a local instance or an existing cluster
  (``address="auto"`` or ``HOST:PORT``), each asking for :func:`resources` (a GPU for fine-tuning when
  the study says so); Ray retries a task whose worker died.

Workers get jobs as plain data and rebuild models, profiles and cvxpy problems themselves. Every job and
every evaluation runs with one torch thread, whichever executor runs it: parallelism comes from jobs,
and fine-tuning does the same arithmetic everywhere, so the results do not depend on the executor.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import SplitpruneError
from .jobs import JobResult, failed_result, run_job
from .spec import Job

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "SequentialExecutor", "make_executor",
           "resources"]


class Executor(ABC):
    """Runs study jobs; see the module docstring.

    Attributes:
        name: ``sequential``, ``local`` or ``ray``.
        workers: How many jobs run at once (Ray: the cluster's CPUs).
    """

    name = "executor"
    workers = 1

    @abstractmethod
    def run(self, jobs: Sequence[Job]) -> Iterator[JobResult]:
        """Run ``jobs``; yield one result per job, in the order they finish."""

    @abstractmethod
    def submit(self, fn: Callable[..., Any], /, *args: Any, gpus: float = 0.0) -> Future[Any]:
        """Run ``fn(*args)`` on a worker (asking for ``gpus`` where the executor can)."""

    def close(self) -> None:  # noqa: B027 - most executors hold nothing to release
        """Release the workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resources(job: Job) -> dict[str, float]:
    """What one job asks of a worker: a CPU, and GPUs when it fine-tunes on one."""
    gpus = job.needs_gpu if job.command == "prune" else 0.0  # a plan's evaluations ask, not the plan
    return {"num_cpus": 1.0, "num_gpus": gpus}


class SequentialExecutor(Executor):
    """Every job in this process, one after another."""

    name = "sequential"

    def run(self, jobs: Sequence[Job]) -> Iterator[JobResult]:
        """Run each job here."""
        for job in jobs:
            yield _one_thread(run_job, job)

    def submit(self, fn: Callable[..., Any], /, *args: Any, gpus: float = 0.0) -> Future[Any]:
        """Call ``fn`` now and return a done future."""
        future: Future[Any] = Future()
        try:
            future.set_result(_one_thread(fn, *args))
        except Exception as exc:
            future.set_exception(exc)
        return future


def _one_thread(fn: Callable[..., Any], /, *args: Any) -> Any:
    """Call ``fn(*args)`` with one torch thread (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


def _warm_worker() -> None:
    """Pool initializer: stdout to stderr (C-level solver banners), one torch thread, the split imports.

    torch-pruning (prune and plan jobs) doubles the import time: it is imported by the first job that
    needs it, not here.
    """
    import torch

    os.dup2(2, 1)
    torch.set_num_threads(1)
    from ..split import solve as _solve  # noqa: F401


# Thread pools of the numeric libraries: one thread each in a pool worker (set before it starts, or
# numpy's OpenBLAS threads spin against the other workers; Ray does the same for its tasks).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _one_thread_children() -> Iterator[None]:
    """Processes started inside get one thread per numeric library (this process is not affected)."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalExecutor(Executor):
    """A process pool on this machine (spawn context: no forked torch or cvxpy state).

    Args:
        workers: Processes (default: the CPUs this process may use).
        attempts: Runs of a job whose worker died before it gives up on it.
    """

    name = "local"

    def __init__(self, workers: int | None = None, *, attempts: int = 3) -> None:
        cpus = _cpus()
        self.workers = max(1, workers or cpus)
        self.attempts = attempts
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm_worker,
            )
        return self._pool

    def run(self, jobs: Sequence[Job]) -> Iterator[JobResult]:
        """Submit every job; rebuild the pool and resubmit in-flight jobs if a worker dies."""
        tries = {job.job_id: 0 for job in jobs}
        waiting = list(jobs)
        while waiting:
            pool = self._get_pool()
            with _one_thread_children():  # the pool starts its workers as jobs arrive
                futures = {pool.submit(run_job, job): job for job in waiting}
            waiting = []
            try:
                for future in as_completed(futures):
                    job = futures.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        futures[future] = job
                        raise
            except BrokenProcessPool:
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                for future, job in futures.items():
                    if future.done() and not future.cancelled() and future.exception() is None:
                        yield future.result()  # finished before the pool broke
                        continue
                    tries[job.job_id] += 1
                    if tries[job.job_id] >= self.attempts:
                        yield _died(job, tries[job.job_id])
                    else:
                        waiting.append(job)

    def submit(self, fn: Callable[..., Any], /, *args: Any, gpus: float = 0.0) -> Future[Any]:
        """Submit ``fn(*args)`` to the pool (a GPU request is the function's own business here)."""
        with _one_thread_children():
            return self._get_pool().submit(fn, *args)

    def close(self) -> None:
        """Shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _died(job: Job, tries: int) -> JobResult:
    return failed_result(job, f"the worker process died {tries} times running this job; run it alone to "
                              "see why")


def _run_job_in(cwd: str, job: Job) -> JobResult:
    """Ray task: run ``job`` from the client's working directory where this node has it.

    Relative ``file.py`` specs then mean what they mean on the client (a shared file system).
    """
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return _one_thread(run_job, job)


class RayExecutor(Executor):
    """Ray tasks on a local instance (``address=None`` starts one) or an existing cluster.

    Args:
        address: ``auto`` (the cluster this node belongs to), ``HOST:PORT``, or None for a new local
            instance; ignored when Ray is already initialised in this process.
        attempts: Runs of a task whose worker died (Ray's ``max_retries`` is ``attempts - 1``).
        num_cpus: CPUs of a local instance (default: all).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, attempts: int = 3, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise SplitpruneError("the ray executor needs Ray: pip install 'splitprune[ray]'") from None
        self._ray = ray
        self._owned = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = num_cpus
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise SplitpruneError(
                    f"cannot connect to the Ray cluster at {address!r} ({_first_line(exc)}); start one with "
                    "`ray start --head` or check --ray-address"
                ) from None
            self._owned = True
        self.attempts = attempts
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remotes: dict[Callable[..., Any], Any] = {}

    def _remote(self, fn: Callable[..., Any]) -> Any:
        if fn not in self._remotes:
            self._remotes[fn] = self._ray.remote(fn)
        return self._remotes[fn]

    def run(self, jobs: Sequence[Job]) -> Iterator[JobResult]:
        """Submit every job as a task; yield results as tasks finish."""
        ray = self._ray
        task, cwd = self._remote(_run_job_in), os.getcwd()
        retries = self.attempts - 1
        refs = {task.options(max_retries=retries, **resources(job)).remote(cwd, job): job for job in jobs}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                job = refs.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died on every attempt
                    yield failed_result(job, f"ray task failed: {_first_line(exc)}")

    def submit(self, fn: Callable[..., Any], /, *args: Any, gpus: float = 0.0) -> Future[Any]:
        """Run ``fn(*args)`` as a task asking for a CPU and ``gpus``."""
        task = self._remote(_one_thread).options(num_cpus=1, num_gpus=gpus, max_retries=self.attempts - 1)
        ref = task.remote(fn, *args)
        return ref.future()  # type: ignore[no-any-return]

    def close(self) -> None:
        """Shut down the instance this executor started (a cluster it joined stays up)."""
        if self._owned:
            self._ray.shutdown()


EXECUTORS = ("local", "ray", "sequential")


def make_executor(name: str, *, workers: int | None = None, ray_address: str | None = None) -> Executor:
    """The executor called ``name`` (``local``, ``ray`` or ``sequential``).

    Raises:
        SplitpruneError: ``name`` is unknown, or Ray is missing or unreachable.
    """
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(ray_address, num_cpus=workers)
    if name == "sequential":
        return SequentialExecutor()
    raise SplitpruneError(f"unknown executor {name!r}: use {', '.join(EXECUTORS)}")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
