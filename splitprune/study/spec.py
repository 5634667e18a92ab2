"""The study file: a validated ``[study]`` table expanded into a product of independent jobs.

A study file is TOML with one ``[study]`` table. Lists expand as a product; keys that do not apply to
the command are rejected (a ``links`` list on an ``estimate`` study is a mistake, not a no-op)::

    [study]
    command = "split"
    models = ["torchvision:resnet18", "torchvision:mobilenet_v2"]
    boards = ["tx2", "xavier-nx"]
    modes = ["eager", "tensorrt"]
    precisions = ["fp16"]
    power_modes = ["all"]            # every mode of each board's profile
    links = ["5g", "wifi"]
    rates_bps = [1e6, 1e7]
    objective = "energy"

Every deployment axis the CLI takes is a list here: ``modes`` (``eager``, ``graph``, ``tensorrt``),
``precisions``, ``power_modes`` (names, aliases, numbers, or ``all``), ``clocks`` (explicit clock
settings, ``"gpu=624.75MHz,emc=2133MHz"``), ``batches`` and ``launches`` (``enqueue``, ``cuda-graph``;
TensorRT jobs only). A job prices exactly what the CLI with the same options prices
(:func:`splitprune.study.pricing.job_deployment`).

Every :class:`Job` carries only plain parameters (strings, numbers, tuples), so it pickles to any
worker, which rebuilds models, profiles and cvxpy problems itself. Its id is a hash of those
parameters: the same job has the same id in every run, which is what resuming relies on.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import StrictModel, load_toml_model
from ..errors import ConfigError

__all__ = ["COMMANDS", "Job", "StudyFile", "StudySpec", "expand", "load_study"]

COMMANDS = ("estimate", "split", "prune", "plan")
# Which product keys each command reads; the others must stay unset.
_DEPLOYMENT = ("models", "boards", "modes", "precisions", "power_modes", "clocks", "batches", "launches")
_AXES = {
    "estimate": _DEPLOYMENT,
    "split": (*_DEPLOYMENT, "links", "rates_bps", "objectives", "budgets"),
    "prune": (*_DEPLOYMENT, "budgets"),
    "plan": (*_DEPLOYMENT, "links", "rates_bps", "objectives", "budgets"),
}
_OBJECTIVES = {"split": ("energy", "latency", "weighted"), "plan": ("energy", "latency")}


class PlanSettings(StrictModel):
    """Search bounds of a ``plan`` study (see :class:`splitprune.plan.PlanOptions`)."""

    max_prune: float = 0.5
    step_saliency: float = 0.02
    max_candidates: int = 6
    round_to: int | None = None
    full_front: bool = False


class PruneSettings(StrictModel):
    """Options of a ``prune`` study (see :class:`splitprune.prune.PruneOptions`).

    ``importance`` may be a list: the study then expands over it like the other lists.
    """

    importance: str | list[str] = "energy"
    metric: Literal["energy", "latency"] = "energy"
    round_to: int | None = None
    min_channels: int = 4
    max_ratio: float = 0.9


class StudySpec(StrictModel):
    """The ``[study]`` table (lists expand as a product; see the module docstring).

    ``budgets`` are fractions of the unpruned all-local figure (``0.5``, ``"50%"``) or absolutes with a
    unit (``"80mJ"``, ``"12ms"``). ``evaluate`` names ``package.module:function`` (or
    ``path/file.py:function``) that fine-tunes a pruned model and returns its accuracy; with it the
    planner's pruning cost is the accuracy lost, and its evaluations run on the executor.
    """

    command: Literal["estimate", "split", "prune", "plan"]
    models: list[str] = Field(min_length=1)
    boards: list[str] = Field(default_factory=lambda: ["tx2"], min_length=1)
    modes: list[Literal["eager", "graph", "tensorrt"]] = Field(
        default_factory=lambda: ["eager"], min_length=1  # type: ignore[arg-type]
    )
    precisions: list[str] | None = None
    power_modes: list[str] | None = None
    clocks: list[str] | None = None
    batches: list[int] | None = None
    launches: list[Literal["enqueue", "cuda-graph"]] | None = None
    links: list[str] | None = None
    rates_bps: list[float] | None = None
    objective: str | None = None
    objectives: list[str] | None = None
    budgets: list[float | str] | None = None
    server: str | None = None
    wire: str | None = None
    input_wire: str = "uint8"
    input_shape: list[int] | None = None
    seed: int = 0
    evaluate: str | None = None
    evaluate_gpus: float = Field(default=0.0, ge=0)
    plan: PlanSettings = Field(default_factory=PlanSettings)
    prune: PruneSettings = Field(default_factory=PruneSettings)

    @field_validator("rates_bps")
    @classmethod
    def _positive_rates(cls, value: list[float] | None) -> list[float] | None:
        for rate in value or ():
            if not (rate > 0 and math.isfinite(rate)):
                raise ValueError(f"every rate must be positive and finite, got {rate}")
        return value

    @field_validator("batches")
    @classmethod
    def _positive_batches(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(b < 1 for b in value)):
            raise ValueError(f"batches must be whole numbers >= 1, got {value}")
        return value

    @model_validator(mode="after")
    def _launch_needs_tensorrt(self) -> StudySpec:
        if self.launches is not None and "tensorrt" not in self.modes:
            raise ValueError("launches apply to TensorRT: add \"tensorrt\" to modes or remove launches")
        if self.clocks is not None and self.power_modes is not None and "all" in self.power_modes:
            raise ValueError("clocks price explicit clocks over one power mode; do not combine with \"all\"")
        return self

    @field_validator("input_shape")
    @classmethod
    def _positive_shape(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(d < 1 for d in value)):
            raise ValueError(f"input_shape must be positive integers like [1, 3, 224, 224], got {value}")
        return value

    @field_validator("evaluate")
    @classmethod
    def _entry_point(cls, value: str | None) -> str | None:
        if value is not None and (":" not in value or not value.rpartition(":")[2]):
            raise ValueError(f"evaluate must be package.module:function or file.py:function, got {value!r}")
        return value

    @model_validator(mode="after")
    def _keys_fit_the_command(self) -> StudySpec:
        if self.objective is not None and self.objectives is not None:
            raise ValueError("give objective or objectives, not both")
        axes = _AXES[self.command]
        unused = [k for k in ("links", "rates_bps", "objectives", "budgets")
                  if getattr(self, k) is not None and k not in axes]
        if self.objective is not None and "objectives" not in axes:
            unused.append("objective")
        if unused:
            raise ValueError(f"{unused[0]} does not apply to command {self.command!r}; remove it")
        if self.command in ("split", "plan") and not self.links:
            raise ValueError(f"command {self.command!r} needs links, e.g. links = [\"wifi\"]")
        if self.command == "plan" and not self.budgets:
            raise ValueError("command 'plan' needs budgets, e.g. budgets = [0.5] or [\"80mJ\"]")
        if self.evaluate is not None and self.command not in ("prune", "plan"):
            raise ValueError(f"evaluate applies to prune and plan, not {self.command!r}; remove it")
        allowed = _OBJECTIVES.get(self.command, ())
        for objective in self.objective_list():
            if objective not in allowed:
                raise ValueError(f"unknown objective {objective!r}: use {', '.join(allowed)}")
        from ..prune.budget import Budget

        for budget in self.budgets or ():
            Budget.parse(budget)  # BudgetError: one line naming the bad budget
        return self

    def objective_list(self) -> list[str]:
        """The objectives to expand over (``energy`` by default, where the command has one)."""
        if self.objectives is not None:
            return list(self.objectives)
        if self.command in _OBJECTIVES:
            return [self.objective or "energy"]
        return []


class StudyFile(StrictModel):
    """A whole study file: an optional ``schema_version`` and the ``[study]`` table."""

    schema_version: Literal[1] = 1
    study: StudySpec


_LATER_AXES = ("clocks", "batch", "launch")


@dataclass(frozen=True)
class Job:
    """One independent run of a command, as plain data.

    Attributes:
        command: ``estimate``, ``split``, ``prune`` or ``plan``.
        model: Model spec (``torchvision:NAME``, ``package.module:fn``, ``file.py:fn``).
        board: Board profile name or path.
        mode: ``eager``, ``graph`` or ``tensorrt``.
        precision: Precision priced (None: the profile's own).
        power_mode: Power mode priced (None: the profile's own).
        clocks: Explicit clocks (``gpu=..,emc=..``) over the power mode, None: the mode's own.
        batch: Batch size (None: the model's own input shape).
        launch: TensorRT launch method (None: the default, ``enqueue``; other modes: None).
        link: Link profile (split and plan).
        rate_bps: Uplink rate, bit/s (None: the link's own).
        objective: What the command minimises (split and plan).
        budget: Fraction of the baseline or an absolute with a unit (split, prune, plan).
        settings: The study's shared options as canonical JSON (sorted keys).
    """

    command: str
    model: str
    board: str
    mode: str = "eager"
    precision: str | None = None
    power_mode: str | None = None
    link: str | None = None
    rate_bps: float | None = None
    objective: str | None = None
    budget: float | str | None = None
    settings: str = "{}"
    clocks: str | None = None
    batch: int | None = None
    launch: str | None = None

    @property
    def job_id(self) -> str:
        """A stable id: the first 16 hex digits of the SHA-256 of the job's parameters."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def options(self) -> dict[str, Any]:
        """The shared options as a dict."""
        return dict(json.loads(self.settings))

    @property
    def needs_gpu(self) -> float:
        """GPUs one evaluation of this job asks for (0 without an evaluate hook)."""
        return float(self.options.get("evaluate_gpus", 0.0)) if self.options.get("evaluate") else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (the parameters that define the job).

        The deployment axes added later (``clocks``, ``batch``, ``launch``) appear only when set, so a
        job that does not use them keeps the id it had before they existed (resuming still works).
        """
        row = asdict(self)
        row["settings"] = self.options
        for key in _LATER_AXES:
            if row[key] is None:
                del row[key]
        return row

    def deployment(self) -> Any:
        """The job's :class:`~splitprune.deploy.Deployment` (as the CLI with these options builds it)."""
        from .pricing import job_deployment

        return job_deployment(self.board, mode=self.mode, precision=self.precision,
                              power_mode=self.power_mode, clocks=self.clocks, batch=self.batch,
                              launch=self.launch)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """Inverse of :meth:`to_dict`."""
        fields = dict(data)
        fields["settings"] = _canonical(fields.get("settings") or {})
        return cls(**fields)


def load_study(path: Path) -> StudySpec:
    """Read and validate a study file; unknown keys and bad values fail with one line.

    Raises:
        ConfigError: The file is missing, not TOML, or a key is unknown, missing or bad.
    """
    spec = load_toml_model(Path(path), StudyFile).study
    check_pricing(spec, source=str(path))
    return spec


def check_pricing(spec: StudySpec, *, source: str = "study") -> None:
    """Reject deployments the cost model cannot price (one line each), before any job runs.

    Raises:
        ConfigError: A board is unknown, or a mode, precision, power mode, clock setting or launch
            method is not priced for its profile.
    """
    for job in expand(spec):
        try:
            job.deployment()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def _power_modes(spec: StudySpec, board: str) -> list[str | None]:
    """The power modes of ``board`` the study lists (``all``: every mode of its profile)."""
    if not spec.power_modes:
        return [None]
    if "all" not in spec.power_modes:
        return list(spec.power_modes)
    from ..board import load_board

    profile = load_board(board)
    every = list(profile.power_modes) or [profile.board.power_mode]
    named = [m for m in spec.power_modes if m != "all"]
    return list(dict.fromkeys([*every, *named]))


def expand(spec: StudySpec) -> list[Job]:
    """The product of the study's lists, as jobs in a stable order (model-major)."""
    axes = _AXES[spec.command]
    importance = spec.prune.importance
    importances = importance if isinstance(importance, list) else [importance]
    if spec.command != "prune":
        importances = importances[:1]  # not read: one set of settings
    lists: dict[str, list[Any]] = {
        "boards": spec.boards, "modes": list(spec.modes),
        "precisions": spec.precisions or [None], "power_modes": [None],
        "clocks": spec.clocks or [None], "batches": spec.batches or [None],
        "launches": spec.launches or [None],
        "links": (spec.links or [None]) if "links" in axes else [None],
        "rates_bps": (spec.rates_bps or [None]) if "rates_bps" in axes else [None],
        "objectives": spec.objective_list() or [None],
        "budgets": (spec.budgets or [None]) if "budgets" in axes else [None],
    }
    jobs = []
    for model, chosen, *rest in itertools.product(spec.models, importances, *lists.values()):
        board, mode, precision, _, clocks, batch, launch, link, rate, objective, budget = rest
        if mode != "tensorrt":
            launch = None  # a launch method is a TensorRT axis: other modes run once
        settings = _canonical(_settings(spec, chosen))
        for power_mode in _power_modes(spec, board):
            jobs.append(Job(
                command=spec.command, model=model, board=board, mode=mode, precision=precision,
                power_mode=power_mode, link=link, rate_bps=None if rate is None else float(rate),
                objective=objective, budget=budget, settings=settings, clocks=clocks,
                batch=None if batch is None else int(batch), launch=launch,
            ))
    return list({job.job_id: job for job in jobs}.values())  # a list given twice runs once


def _settings(spec: StudySpec, importance: str) -> dict[str, Any]:
    """The options every job of the study shares (only those its command reads)."""
    out: dict[str, Any] = {"seed": spec.seed}
    if spec.input_shape is not None:
        out["input_shape"] = list(spec.input_shape)
    if spec.command in ("split", "plan"):
        out.update(server=spec.server, wire=spec.wire, input_wire=spec.input_wire)
    if spec.command == "plan":
        out["plan"] = spec.plan.model_dump()
    if spec.command == "prune":
        out["prune"] = {**spec.prune.model_dump(), "importance": importance}
    if spec.evaluate is not None:
        out.update(evaluate=spec.evaluate, evaluate_gpus=spec.evaluate_gpus)
    return out


def _canonical(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))
