"""Running one study job through the library API, and flattening its JSON document into a row.

:func:`run_job` is what a worker calls: it rebuilds everything (model, profiles, graph, cvxpy
problems) from the job's plain parameters, runs the command's library function and returns a
:class:`JobResult` holding the command's JSON document and the flattened row. A user error
(:class:`~splitprune.errors.SplitpruneError`) or an infeasible budget becomes a result with status
``failed`` or ``infeasible`` and its one-line message, so the study goes on.

A ``plan`` job with an ``evaluate`` entry point takes an optional executor (``submit(fn, *args)``
returning a future): the planner then fine-tunes and scores its candidate pruned models on it.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import SplitpruneError
from .entry import EntryPoint, PrimedExecutor
from .spec import Job

# A concurrent.futures.Executor or a study executor: anything with submit(fn, *args) -> Future.
Executor = Any

__all__ = ["JobResult", "failed_result", "flatten", "headline", "run_job"]

# Fields every row has, whatever the command: the comparable figures of the result.
_HEADLINE = {
    "estimate": ("total_energy_j", "total_latency_s"),
    "split": ("metrics.total_energy_j", "metrics.latency_s"),
    "prune": ("energy_after_j", "latency_after_s"),
    "plan": ("energy_j", "latency_s"),
}
# Long per-node tables stay in the per-job JSON, not in the row.
_DROP = ("layers", "nodes", "device_nodes", "trajectory", "pareto")


@dataclass(frozen=True)
class JobResult:
    """What one job produced.

    Attributes:
        job_id: The job's stable id.
        job: The job's parameters (:meth:`Job.to_dict`).
        status: ``ok``, ``infeasible`` (no solution meets the budget) or ``failed``.
        error: The one-line error message, or None.
        elapsed_s: Wall-clock time of the job in its worker, s.
        document: The command's ``--json`` document (None unless ``ok``).
        row: The flattened row: job parameters, status, ``energy_j``, ``latency_s`` and the document.
    """

    job_id: str
    job: dict[str, Any]
    status: str
    error: str | None
    elapsed_s: float
    document: dict[str, Any] | None = None
    row: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the per-job JSON file."""
        return {"schema": "splitprune.study_job/1", "job_id": self.job_id, "job": self.job,
                "status": self.status, "error": self.error, "elapsed_s": self.elapsed_s,
                "document": self.document, "row": self.row}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        """Inverse of :meth:`to_dict`."""
        return cls(job_id=data["job_id"], job=data["job"], status=data["status"], error=data["error"],
                   elapsed_s=data["elapsed_s"], document=data["document"], row=data["row"])


def run_job(job: Job, executor: Executor | None = None) -> JobResult:
    """Run ``job`` (in this process) and return its result; never raises for a failing job.

    Args:
        job: The job.
        executor: Where a ``plan`` job with an ``evaluate`` entry point scores its candidates.
    """
    from ..plan import PlanInfeasibleError
    from ..prune import BudgetError
    from ..split import InfeasibleSplitError

    started = time.perf_counter()
    status, error, document = "ok", None, None
    try:
        document = _RUNNERS[job.command](job, executor)
    except (InfeasibleSplitError, PlanInfeasibleError, BudgetError) as exc:
        status, error = "infeasible", _one_line(str(exc))
    except SplitpruneError as exc:
        status, error = "failed", _one_line(str(exc))
    except Exception as exc:  # a bug or a broken model: record it, the study goes on
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
        status, error = "failed", _one_line(f"{type(exc).__name__}: {exc}{where}")
    elapsed = time.perf_counter() - started
    result = JobResult(job.job_id, job.to_dict(), status, error, elapsed, document)
    return replace(result, row=_row(job, result))


def failed_result(job: Job, message: str) -> JobResult:
    """A ``failed`` result for a job that never returned (its worker died)."""
    result = JobResult(job.job_id, job.to_dict(), "failed", _one_line(message), 0.0)
    return replace(result, row=_row(job, result))


def flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys; lists of scalars a JSON-friendly string; long tables are dropped.

    A list holding one dict (a sweep of one rate) is flattened as its element, under ``key.0``.
    """
    out: dict[str, Any] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if key in _DROP:
            continue
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            if all(isinstance(v, (str, int, float, bool)) or v is None for v in value):
                out[name] = ",".join("" if v is None else str(v) for v in value)
            elif len(value) == 1 and isinstance(value[0], dict):
                out.update(flatten(value[0], f"{name}.0."))
            else:
                out[f"{name}.count"] = len(value)
        else:
            out[name] = value
    return out


def _row(job: Job, result: JobResult) -> dict[str, Any]:
    row: dict[str, Any] = {"job_id": job.job_id}
    params = job.to_dict()
    settings = params.pop("settings")
    row.update({k: (None if v is None else str(v)) if k == "budget" else v for k, v in params.items()})
    row.update({"evaluate": settings.get("evaluate"), "status": result.status, "error": result.error,
                "elapsed_s": result.elapsed_s, "energy_j": None, "latency_s": None})
    if result.document is not None:
        flat = flatten(result.document)
        energy_key, latency_key = _HEADLINE[job.command]
        row["energy_j"], row["latency_s"] = flat.get(energy_key), flat.get(latency_key)
        for key, value in flat.items():
            row[f"result.{key}" if key in row else key] = value
    return row


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _example(job: Job, *, device: str) -> tuple[Any, Any]:
    """The job's model (seeded weights on ``device``) and an example input of its shape and batch."""
    import torch

    from ..models import load_model

    options = job.options
    torch.manual_seed(int(options.get("seed", 0)))
    loaded = load_model(job.model, device=device)
    shape = job.deployment().input_shape(options.get("input_shape") or loaded.input_shape)
    example = torch.empty(shape, device="meta") if device == "meta" else torch.randn(shape)
    return loaded.module.eval(), example


def _links(job: Job) -> tuple[Any, Any]:
    from ..link import load_link, load_server

    server = job.options.get("server")
    return load_link(str(job.link)), (load_server(server) if server else None)


def _estimate(job: Job, executor: Executor | None) -> dict[str, Any]:
    from ..energy import annotate
    from ..graph import trace

    module, example = _example(job, device="meta")
    deployed = job.deployment()
    graph = annotate(trace(module, example, name=job.model), deployed)
    return {**graph.to_dict(), "deployment": deployed.to_dict()}


def _split(job: Job, executor: Executor | None) -> dict[str, Any]:
    from ..graph import trace
    from ..prune import Budget
    from ..split import SplitOptions, evaluate, split_graph, split_problem

    options = job.options
    link, server = _links(job)
    deployed = job.deployment()
    module, example = _example(job, device="meta")
    graph = trace(module, example, name=job.model)
    wires = {"wire": options.get("wire"), "input_wire": options.get("input_wire", "uint8")}
    limits: dict[str, Any] = {}
    if job.budget is not None:
        budget = Budget.parse(job.budget)
        problem = split_problem(graph, deployed, server=server, **wires)
        local = evaluate(problem, problem.all_local(), link.figures(job.rate_bps))
        base = local.total_energy_j if budget.metric == "energy_j" else local.latency_s
        key = "energy_budget_j" if budget.metric == "energy_j" else "deadline_s"
        limits[key] = budget.resolve(base)
    split_options = SplitOptions(objective=job.objective or "energy", cross_check=not limits, **limits)
    solved = split_graph(graph, deployed, link, options=split_options, server=server,
                         rate_bps=job.rate_bps, name=job.model, **wires)
    return {**solved.result.to_dict(), "deployment": deployed.to_dict()}


def _prune(job: Job, executor: Executor | None) -> dict[str, Any]:
    from ..prune import Budget, PruneOptions, prune_to_budget

    settings = dict(job.options.get("prune") or {})
    importance, metric = settings.pop("importance", "energy"), settings.pop("metric", "energy")
    budget = Budget.parse(job.budget if job.budget is not None else 0.5)
    if budget.relative and metric == "latency":
        budget = Budget(budget.value, metric="latency_s")
    module, example = _example(job, device="cpu")
    result = prune_to_budget(module, example, job.deployment(), budget, importance=importance,
                             options=PruneOptions(seed=int(job.options.get("seed", 0)), **settings),
                             name=job.model)
    document = result.to_dict()
    document["input_shape"] = list(example.shape)
    spec = job.options.get("evaluate")
    if spec is not None:
        document["accuracy"] = float(EntryPoint(spec)(result.model))
    return document


def _plan(job: Job, executor: Executor | None) -> dict[str, Any]:
    from ..energy import annotate
    from ..graph import trace
    from ..plan import PlanOptions, plan
    from ..prune import Budget

    options = job.options
    link, server = _links(job)
    profile = job.deployment()
    module, example = _example(job, device="cpu")
    budget = Budget.parse(job.budget)  # type: ignore[arg-type]  # spec validation: plan has budgets
    if budget.relative:  # a fraction of the unpruned model's all-local energy
        local_j = annotate(trace(module, example), profile).total_energy_j
        limit: dict[str, Any] = {"energy_budget_j": budget.resolve(local_j)}
    else:
        limit = {"energy_budget_j" if budget.metric == "energy_j" else "deadline_s": budget.value}
    plan_options = PlanOptions(
        objective=job.objective or "energy", wire=options.get("wire"),
        input_wire=options.get("input_wire", "uint8"),
        **{k: v for k, v in (options.get("plan") or {}).items()}, **limit,
    )
    spec = options.get("evaluate")
    evaluate_fn = None if spec is None else EntryPoint(spec)
    pool = None
    if evaluate_fn is not None and executor is not None:
        pool = PrimedExecutor(executor, primers=(job.model, str(spec)), gpus=job.needs_gpu)
    sweep = plan(module, example, profile, link, rates_bps=None if job.rate_bps is None else [job.rate_bps],
                 server=server, options=plan_options, evaluate_fn=evaluate_fn, executor=pool,
                 name=job.model)
    document = sweep.to_dict()
    best = sweep.plans[0]
    base = next((p.accuracy for p in best.pareto if p.state == 0), None)
    document["baseline_accuracy"] = base
    document["budget_j"] = limit.get("energy_budget_j")
    document["deadline_s"] = limit.get("deadline_s")
    return document


_RUNNERS: dict[str, Callable[[Job, Any], dict[str, Any]]] = {
    "estimate": _estimate,
    "split": _split,
    "prune": _prune,
    "plan": _plan,
}


def headline(row: dict[str, Any]) -> tuple[float, float]:
    """``(energy_j, latency_s)`` of a row, NaN where missing."""
    def number(value: Any) -> float:
        return float(value) if isinstance(value, (int, float)) else math.nan

    return number(row.get("energy_j")), number(row.get("latency_s"))
