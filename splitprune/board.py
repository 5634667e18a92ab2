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
:class:`splitprune.deploy.Deployment`) replays kernels without the CPU: only ``gpu`` remains::

    latency = smoothmax(launch_floor[kind] + network_per_op, gpu)          (eager, kernel ops)

**Energy.** Energy is power times time plus the work done: ``static_power_w`` (the power drawn whatever
runs, idle included) times the op's latency, plus the same compute and memory terms (joules per MAC and
per byte, added, because both are spent) and ``static_per_layer`` joules per op. A profile with
``static_power_w = 0`` (schema 1) prices energy from its own slopes alone, with the latency formula.
The two formulas are two methods, :meth:`CostModel.latency_cost` and :meth:`CostModel.energy_cost`
(which takes the op's latency as an argument)::

    energy = static_power_w * latency + compute + memory + static_per_layer     (static_power_w > 0)

Schema 1 profiles still load: they have no launch floors, no network term and no static power, which
is exactly the schema-1 model (a sum of one slope term and ``static_per_layer``) except that the memory
term now also bounds MAC layers (a roofline).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .config import StrictModel, check_schema_and_provenance, load_toml_model, resolve_profile
from .errors import ConfigError
from .hardware import DeviceSpec, PowerMode, PrecisionSpec, RuntimeSpec
from .ops import NO_WORK_KINDS

__all__ = [
    "CONV_KINDS",
    "DISPATCH_ONLY_KINDS",
    "FC_KINDS",
    "FREE_KINDS",
    "GEMM_KINDS",
    "MODES",
    "PRECISIONS",
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
MODES = ("eager", "graph", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}
SCHEMA_VERSIONS = (1, 2, 3)
SPLIT_K_MIN_REDUCTION = 128
"""A kernel whose tiles leave the device idle splits its reduction into chunks of at least this many
MACs per output (cuBLAS/cuDNN split-K), so a small-M, large-K layer still fills the SMs."""
SMOOTH_MAX_EXPONENT = 8.0
"""``smoothmax(a, b) = (a^p + b^p)^(1/p)``: within 9 % of ``max`` where ``a = b``, exact far from it."""


GemmShape = tuple[int, int, int]
"""``(batches, rows, cols)`` of the matrix product an op computes: a conv's rows are its output pixels
times the batch and its columns its output channels; a linear op's rows are all but its last output
dimension; a batched matmul has ``batches`` products of ``rows x cols``."""


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
        tile_rows: GEMM rows (output pixels x batch, or tokens) per thread-block tile; 1 pads no rows.
        concurrent_tiles: Tiles the whole GPU runs at once (SMs x tiles per SM); 0 leaves out wave
            quantisation. With it a layer whose tiles do not fill the device pays for the idle SMs.
        per_inference: Fixed cost once per inference (TensorRT's enqueue), charged on the input.
        output_overhead_macs: What each output of a conv or GEMM costs beyond its reduction, in MACs
            (a tile's prologue and epilogue: loading, scaling and writing it); a layer with a short
            reduction (few input channels) therefore runs slower per MAC than a deep one.
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
    tile_rows: int = Field(default=1, ge=1)
    concurrent_tiles: int = Field(default=0, ge=0)
    per_inference: float = Field(default=0.0, ge=0)
    output_overhead_macs: float = Field(default=0.0, ge=0)

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

    def tiled_factor(self, kind: str, *, macs: int, kernels: int, shape: GemmShape | None) -> float:
        """How much a GEMM-like op overpays per MAC for whole tiles and whole waves over the SMs.

        Without a ``shape`` (or without ``tile_rows``/``concurrent_tiles``) only the kernel padding of
        :meth:`padded_kernel_factor` applies to convolutions, as in schema 2.
        """
        plain = self.tile_rows == 1 and self.concurrent_tiles == 0
        if shape is None or (plain and self.output_overhead_macs == 0):
            return self.padded_kernel_factor(kernels) if kind in CONV_KINDS else 1.0
        batches, rows, cols = shape
        per_group = kernels if kind in CONV_KINDS and kernels > 0 else cols
        groups = max(1, cols // per_group) if per_group > 0 else 1
        if rows <= 0 or per_group <= 0 or macs <= 0:
            return 1.0
        reduction = macs / (batches * groups * rows * per_group)
        overhead = (reduction + self.output_overhead_macs) / reduction if per_group > 1 else 1.0
        if plain:
            return overhead * (self.padded_kernel_factor(kernels) if kind in CONV_KINDS else 1.0)
        tile_cols = min(self.conv_kernel_granularity, 1 << (per_group - 1).bit_length())
        tiles = batches * groups * math.ceil(rows / self.tile_rows) * math.ceil(per_group / tile_cols)
        factor = overhead * tiles * self.tile_rows * tile_cols / (batches * groups * rows * per_group)
        if self.concurrent_tiles > 0:
            slots = self.concurrent_tiles * max(1, self.conv_kernel_granularity // tile_cols)
            splits = 1
            if tiles < slots:
                splits = max(1, min(slots // tiles, int(reduction // SPLIT_K_MIN_REDUCTION)))
            parallel = tiles * splits
            factor *= math.ceil(parallel / slots) * slots / parallel
        return factor

    def compute_cost(
        self, kind: str, *, macs: int, kernels: int = 0, shape: GemmShape | None = None
    ) -> float:
        """The MAC term of one op: its kind's slope times its MACs, padded to whole tiles (and waves)."""
        if kind in CONV_KINDS:
            return self.conv_per_mac * macs * self.tiled_factor(kind, macs=macs, kernels=kernels, shape=shape)
        if kind in GEMM_KINDS:
            slope = self.conv_per_mac if self.gemm_per_mac is None else self.gemm_per_mac
            return slope * macs * self.tiled_factor(kind, macs=macs, kernels=kernels, shape=shape)
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

    def work_cost(
        self,
        kind: str,
        *,
        macs: int,
        mem_bytes: int,
        kernels: int = 0,
        shape: GemmShape | None = None,
        additive: bool = False,
    ) -> float:
        """Cost of the op's work alone, plus ``static_per_layer``.

        The roofline ``max(compute, memory)`` (time) or, with ``additive``, ``compute + memory``
        (energy: both are spent).
        """
        compute = self.compute_cost(kind, macs=macs, kernels=kernels, shape=shape)
        memory = self.memory_per_byte * mem_bytes
        combined = compute + memory if additive else max(compute, memory)
        return combined + self.static_per_layer

    def latency_cost(
        self,
        kind: str,
        *,
        macs: int,
        mem_bytes: int,
        kernels: int = 0,
        dispatches: int = 1,
        shape: GemmShape | None = None,
    ) -> float:
        """The latency formula for one op: CPU dispatch against the GPU roofline (module docstring).

        ``macs``, ``mem_bytes`` moved, ``kernels`` and ATen ``dispatches`` size the op; ``shape`` is
        the op's GEMM ``(batches, rows, cols)`` (:func:`gemm_shape`), for tile and wave
        padding; without it only the conv kernel padding applies. On a schema-1 energy table (no static
        power) this is also the energy formula (:meth:`energy_cost` falls back to it).
        """
        if kind in FREE_KINDS:
            return 0.0
        if kind in DISPATCH_ONLY_KINDS:
            return self.network_per_op
        gpu = self.work_cost(kind, macs=macs, mem_bytes=mem_bytes, kernels=kernels, shape=shape)
        cpu = self.network_per_op + self.floor(kind, dispatches)
        return smooth_max(cpu, gpu) if self.dispatch_overlaps else cpu + gpu

    def energy_cost(
        self,
        kind: str,
        *,
        latency_s: float,
        macs: int,
        mem_bytes: int,
        kernels: int = 0,
        dispatches: int = 1,
        shape: GemmShape | None = None,
    ) -> float:
        """The energy formula for one op that takes ``latency_s``: static power over it plus the work.

        ``static_power_w * latency_s`` plus compute + memory + ``static_per_layer`` (no work for ops
        that launch no kernel). A table without static power (schema 1) prices energy from its own
        slopes with the latency
        formula, as schema 1 did.
        """
        if kind in FREE_KINDS:
            return 0.0
        if self.static_power_w <= 0:
            return self.latency_cost(
                kind, macs=macs, mem_bytes=mem_bytes, kernels=kernels, dispatches=dispatches, shape=shape
            )
        work = 0.0 if kind in DISPATCH_ONLY_KINDS else self.work_cost(
            kind, macs=macs, mem_bytes=mem_bytes, kernels=kernels, shape=shape, additive=True
        )
        return self.static_power_w * latency_s + work


def gemm_shape(kind: str, output_shapes: list[tuple[int, ...]] | list[list[int]]) -> GemmShape | None:
    """The GEMM shape of a conv, linear, matmul or attention node from its output shape, else None."""
    if not output_shapes or kind not in CONV_KINDS | FC_KINDS | GEMM_KINDS:
        return None
    out = tuple(output_shapes[0])
    if len(out) < 2:
        return None
    numel = math.prod(out)
    if kind in CONV_KINDS:
        return 1, numel // out[1], out[1]
    if kind == "matmul" and len(out) >= 3:
        return numel // (out[-2] * out[-1]), out[-2], out[-1]
    return 1, numel // out[-1], out[-1]


class BoardInfo(StrictModel):
    """What the coefficients describe: board, power mode, numeric precision and framework."""

    name: str
    power_mode: str
    precision: Literal["fp32", "fp16", "int8"]
    framework: str
    device: str = "cuda"
    runtime: Literal["eager", "graph", "tensorrt"] = "eager"


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
    device: DeviceSpec | None = None
    power_modes: dict[str, PowerMode] = Field(default_factory=dict)
    precisions: dict[str, PrecisionSpec] = Field(default_factory=dict)
    runtimes: dict[str, RuntimeSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> BoardProfile:
        check_schema_and_provenance(
            self.schema_version, self.coefficient_keys(), self.provenance.values, supported=SCHEMA_VERSIONS
        )
        hardware = self.device is not None or self.power_modes or self.precisions or self.runtimes
        if hardware and self.schema_version < 3:
            raise ValueError("device, power_modes, precisions and runtimes need schema_version 3")
        if self.power_modes and self.board.power_mode not in self.power_modes:
            raise ValueError(f"board.power_mode {self.board.power_mode!r} must name one of power_modes")
        if self.power_modes and self.device is None:
            raise ValueError("power_modes need a [device] table (clocks are scaled against it)")
        if self.latency_s.static_power_w:
            raise ValueError("latency_s.static_power_w must be 0: static power belongs to energy_j")
        return self

    def coefficient_keys(self) -> list[str]:
        """Dotted names of every coefficient the profile sets, e.g. ``energy_j.conv_per_mac``.

        Hardware tables need one provenance entry each: ``device``, ``power_modes.MAXN``, ...
        """
        keys = cost_table_keys({"energy_j": self.energy_j, "latency_s": self.latency_s})
        keys += ["device"] if self.device is not None else []
        for table in ("power_modes", "precisions", "runtimes"):
            keys += [f"{table}.{name}" for name in getattr(self, table)]
        return keys

    @property
    def name(self) -> str:
        """Short human name, e.g. ``NVIDIA Jetson TX2 (MAXN, fp32)``, with the runtime unless eager."""
        runtime = "" if self.board.runtime == "eager" else f", {self.board.runtime}"
        return f"{self.board.name} ({self.board.power_mode}, {self.board.precision}{runtime})"


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
