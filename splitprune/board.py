"""Board profiles: the empirical cost model's coefficients for one board, power mode and precision.

A profile is a TOML file in ``configs/boards/`` with a ``schema_version``, a ``[board]`` table, one cost
table per metric (``[energy_j]`` in joules, ``[latency_s]`` in seconds) and a mandatory ``[provenance]``
table that says where every coefficient came from.

**Compute (the paper's form).** Following Lahmer et al., "Energy Consumption of Neural Networks on NVIDIA
Edge Boards: an Empirical Model" (WiOpt 2022), MACs drive the cost: a fully connected layer has one slope
in MACs, and a convolution a slope set by its number of kernels ``K`` through two hardware parameters, a
slope ``conv_per_mac`` and a kernel granularity ``g`` (the GPU computes output channels in tiles of
``g``, so ``K`` kernels cost as much as ``ceil(K / g) * g``; ``K`` counts kernels per group, so a
depthwise conv pays ``g`` times the dense slope). Matrix products over many rows (a linear op on tokens,
matmul, attention) use ``gemm_per_mac`` (the conv slope when unset). Every op also moves bytes at
``memory_per_byte``. The GPU time of one op is a roofline, the slower of the two, plus a fixed
``static_per_layer``::

    gpu = max(slope_kind * macs * ceil(K/g)*g/K, memory_per_byte * mem_bytes) + static_per_layer

**Launch (schema 2).** In eager PyTorch the CPU dispatches every op; the GPU runs it meanwhile, so an
op costs the slower of the two (``launch_floor[kind]``, the CPU time per op of that kind, or for a kind
without one ``launch_floor["default"]`` per ATen op it dispatches, plus
``network_per_op``, the extra per op that a whole network adds to an isolated layer) and its GPU time.
A smooth maximum (``SMOOTH_MAX_EXPONENT``) keeps the fit differentiable. On a CPU device nothing
overlaps (``dispatch_overlaps = false``): dispatch and work add up. Ops that launch no kernel
(views, dropout in eval) still cost their dispatch, ``network_per_op``. A CUDA graph (``mode="graph"``,
:meth:`BoardProfile.for_mode`) replays kernels without the CPU: only ``gpu`` remains::

    latency = smoothmax(launch_floor[kind] + network_per_op, gpu)          (eager, kernel ops)

**Energy.** Energy is power times time plus the work done: ``static_power_w`` (the power drawn whatever
runs, idle included) times the op's latency, plus the same compute and memory terms (joules per MAC and
per byte, added, because both are spent) and ``static_per_layer`` joules per op. A profile with
``static_power_w = 0`` (schema 1) prices energy from its own slopes alone.

Schema 1 profiles still load: they have no launch floors, no network term and no static power, which
is exactly the schema-1 model (a sum of one slope term and ``static_per_layer``) except that the memory
term now also bounds MAC layers (a roofline).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from .config import StrictModel, check_schema_and_provenance, load_toml_model, resolve_profile
from .errors import ConfigError
from .ops import NO_WORK_KINDS

__all__ = [
    "CONV_KINDS",
    "DISPATCH_ONLY_KINDS",
    "FC_KINDS",
    "FREE_KINDS",
    "GEMM_KINDS",
    "MODES",
    "SCHEMA_VERSIONS",
    "SMOOTH_MAX_EXPONENT",
    "BoardInfo",
    "BoardProfile",
    "CostModel",
    "Provenance",
    "cost_table_keys",
    "load_board",
]

CONV_KINDS = frozenset({"conv"})
FC_KINDS = frozenset({"linear"})
GEMM_KINDS = frozenset({"matmul", "attention"})
FREE_KINDS = frozenset({"input", "output", "shape"})
"""Graph bookkeeping that costs nothing: placeholders, the output, Python-level ``.shape`` reads."""
DISPATCH_ONLY_KINDS = NO_WORK_KINDS - FREE_KINDS
"""Ops that run through PyTorch's dispatcher but launch no kernel (views, dropout in eval)."""
MODES = ("eager", "graph")
SCHEMA_VERSIONS = (1, 2)
SMOOTH_MAX_EXPONENT = 8.0
"""``smoothmax(a, b) = (a^p + b^p)^(1/p)``: within 9 % of ``max`` where ``a = b``, exact far from it."""


def smooth_max(a: float, b: float) -> float:
    """The smooth maximum of two non-negative numbers (see :data:`SMOOTH_MAX_EXPONENT`)."""
    top = max(a, b)
    if top <= 0.0:
        return 0.0
    p = SMOOTH_MAX_EXPONENT
    return top * ((a / top) ** p + (b / top) ** p) ** (1.0 / p)


class CostModel(StrictModel):
    """Coefficients of one metric (energy in J or latency in s), per the module docstring.

    Attributes:
        conv_per_mac: Cost per MAC of a convolution whose kernel count fills whole tiles.
        conv_kernel_granularity: Tile size ``g`` in kernels (output channels); 1 disables padding.
        linear_per_mac: Cost per MAC of fully connected layers (a linear op on a batch of vectors).
        memory_per_byte: Cost per byte read plus written, by every op.
        static_per_layer: Fixed GPU cost of every op that launches a kernel.
        gemm_per_mac: Cost per MAC of matrix products over many rows (matmul, attention, a linear op
            on tokens); ``None`` uses ``conv_per_mac``.
        launch_floor: Eager CPU dispatch time per op, by layer kind (``default`` for kinds not
            listed); latency tables only.
        network_per_op: Extra dispatch time per executed op inside a whole network (eager only).
        static_power_w: Power drawn whatever runs (energy tables only): energy gains
            ``static_power_w * latency`` of every op.
        dispatch_overlaps: Whether work runs while the CPU dispatches the next op (a GPU's asynchronous
            launch: the slower of the two counts) or after it (a CPU: the two add up).
    """

    conv_per_mac: float = Field(ge=0)
    conv_kernel_granularity: int = Field(ge=1)
    linear_per_mac: float = Field(ge=0)
    memory_per_byte: float = Field(ge=0)
    static_per_layer: float = Field(default=0.0, ge=0)
    gemm_per_mac: float | None = Field(default=None, ge=0)
    launch_floor: dict[str, float] = Field(default_factory=dict)
    network_per_op: float = Field(default=0.0, ge=0)
    static_power_w: float = Field(default=0.0, ge=0)
    dispatch_overlaps: bool = True
    _time: CostModel | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_floors(self) -> CostModel:
        bad = [k for k, v in self.launch_floor.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"launch_floor.{bad[0]} must be a finite number >= 0")
        return self

    def padded_kernel_factor(self, kernels: int) -> float:
        """Return ``ceil(K / g) * g / K``: how much a conv with ``kernels`` kernels overpays per MAC."""
        if kernels <= 0:
            return 1.0
        g = self.conv_kernel_granularity
        return math.ceil(kernels / g) * g / kernels

    def compute_cost(self, kind: str, *, macs: int, kernels: int = 0) -> float:
        """The MAC term of one op: its kind's slope times its (tile-padded, for convs) MACs."""
        if kind in CONV_KINDS:
            return self.conv_per_mac * macs * self.padded_kernel_factor(kernels)
        if kind in GEMM_KINDS:
            return (self.conv_per_mac if self.gemm_per_mac is None else self.gemm_per_mac) * macs
        if kind in FC_KINDS:
            return self.linear_per_mac * macs
        return 0.0

    def floor(self, kind: str, dispatches: int = 1) -> float:
        """Eager CPU time of one op of ``kind``: its measured ``launch_floor``, else ``default`` per dispatch.

        ``dispatches`` is how many ATen ops the op runs (the tracer counts them): a kind the sweep did
        not measure, such as a windowed attention that runs 20 of them, pays the default for each.
        """
        if kind in self.launch_floor:
            return self.launch_floor[kind]
        return self.launch_floor.get("default", 0.0) * max(1, dispatches)

    def work_cost(self, kind: str, *, macs: int, mem_bytes: int, kernels: int = 0) -> float:
        """Cost of the op's work alone: roofline time (latency) or compute + memory energy."""
        compute = self.compute_cost(kind, macs=macs, kernels=kernels)
        memory = self.memory_per_byte * mem_bytes
        combined = compute + memory if self._time is not None else max(compute, memory)
        return combined + self.static_per_layer

    def layer_cost(
        self, kind: str, *, macs: int, mem_bytes: int, kernels: int = 0, dispatches: int = 1
    ) -> float:
        """Cost of one op of ``kind`` (``macs``, ``mem_bytes`` moved, ``kernels``, ATen ``dispatches``)."""
        if kind in FREE_KINDS:
            return 0.0
        if self._time is not None:  # energy: static power over the op's time, plus its work
            seconds = self._time.layer_cost(
                kind, macs=macs, mem_bytes=mem_bytes, kernels=kernels, dispatches=dispatches
            )
            work = 0.0 if kind in DISPATCH_ONLY_KINDS else self.work_cost(
                kind, macs=macs, mem_bytes=mem_bytes, kernels=kernels
            )
            return self.static_power_w * seconds + work
        if kind in DISPATCH_ONLY_KINDS:
            return self.network_per_op
        gpu = self.work_cost(kind, macs=macs, mem_bytes=mem_bytes, kernels=kernels)
        cpu = self.network_per_op + self.floor(kind, dispatches)
        return smooth_max(cpu, gpu) if self.dispatch_overlaps else cpu + gpu


def couple_energy(energy: CostModel, latency: CostModel) -> None:
    """Let ``energy`` price its static power over ``latency``'s time (no-op without static power)."""
    if energy.static_power_w > 0:
        energy._time = latency  # noqa: SLF001 - set once, by the profile that owns both tables


class BoardInfo(StrictModel):
    """What the coefficients describe: board, power mode, numeric precision and framework."""

    name: str
    power_mode: str
    precision: Literal["fp32", "fp16", "int8"]
    framework: str
    device: str = "cuda"


class Provenance(StrictModel):
    """Where the numbers came from.

    Attributes:
        kind: ``derived`` (computed from public figures), ``measured`` (fitted to our own measurements)
            or ``paper`` (copied from a publication).
        summary: One paragraph on the method.
        values: For every coefficient (``energy_j.conv_per_mac`` ...), how it was obtained.
        sources: Public documents the derivation relies on.
        replace_with: How to get better numbers.
        unmeasured: Cost tables holding placeholder zeros (e.g. ``energy_j`` of a latency-only
            calibration without a power sensor); :func:`splitprune.annotate` refuses to use them.
    """

    kind: Literal["derived", "measured", "paper"]
    summary: str
    values: dict[str, str]
    sources: list[str] = Field(default_factory=list)
    replace_with: str = ""
    unmeasured: list[Literal["energy_j", "latency_s"]] = Field(default_factory=list)


class BoardProfile(StrictModel):
    """A validated board profile (see the module docstring for the cost formulas)."""

    schema_version: int
    board: BoardInfo
    energy_j: CostModel
    latency_s: CostModel
    provenance: Provenance
    fit_quality: dict[str, float | str | dict[str, float]] | None = None

    @model_validator(mode="after")
    def _check(self) -> BoardProfile:
        check_schema_and_provenance(
            self.schema_version, self.coefficient_keys(), self.provenance.values, supported=SCHEMA_VERSIONS
        )
        if self.latency_s.static_power_w:
            raise ValueError("latency_s.static_power_w must be 0: static power belongs to energy_j")
        couple_energy(self.energy_j, self.latency_s)
        return self

    def coefficient_keys(self) -> list[str]:
        """Dotted names of every coefficient the profile sets, e.g. ``energy_j.conv_per_mac``."""
        return cost_table_keys({"energy_j": self.energy_j, "latency_s": self.latency_s})

    def for_mode(self, mode: str) -> BoardProfile:
        """This profile for an execution mode: ``eager`` (as fitted) or ``graph`` (CUDA-graph replay).

        Raises:
            ConfigError: ``mode`` is neither.
        """
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}: use {' or '.join(MODES)}")
        if mode == "eager":
            return self
        data = self.model_dump(exclude_unset=True)
        # a CUDA-graph replay sees no CPU dispatch: no launch floors, no per-op network term
        data["latency_s"] = {**data["latency_s"], "launch_floor": {}, "network_per_op": 0.0}
        data["board"] = {**data["board"], "power_mode": f"{self.board.power_mode}, CUDA graph"}
        values = dict(self.provenance.values)
        values.setdefault("latency_s.launch_floor", "set to none: a CUDA graph replays without dispatch")
        values.setdefault("latency_s.network_per_op", "set to 0: a CUDA graph replays without dispatch")
        data["provenance"] = {**data["provenance"], "values": values}
        return BoardProfile.model_validate(data)

    @property
    def name(self) -> str:
        """Short human name, e.g. ``NVIDIA Jetson TX2 (MAXN, fp32)``."""
        return f"{self.board.name} ({self.board.power_mode}, {self.board.precision})"


REQUIRED_FIELDS: tuple[str, ...] = (
    "conv_per_mac",
    "conv_kernel_granularity",
    "linear_per_mac",
    "memory_per_byte",
    "static_per_layer",
)


def cost_table_keys(tables: Mapping[str, CostModel] | None = None) -> list[str]:
    """Dotted names of the coefficients that need provenance (schema 1's, plus any other ``tables`` set)."""
    keys = [f"{table}.{field}" for table in ("energy_j", "latency_s") for field in REQUIRED_FIELDS]
    for table, model in (tables or {}).items():
        keys += [f"{table}.{f}" for f in sorted(model.model_fields_set) if f not in REQUIRED_FIELDS]
    return keys


def load_board(name_or_path: str | Path) -> BoardProfile:
    """Load a shipped board (``tx2``, ``xavier-nx``) or a profile TOML file by path."""
    path = resolve_profile(name_or_path, "boards")
    profile = load_toml_model(path, BoardProfile)
    if not isinstance(profile, BoardProfile):  # pragma: no cover - load_toml_model guarantees it
        raise ConfigError(f"{path}: not a board profile")
    return profile
