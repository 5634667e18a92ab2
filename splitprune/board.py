"""Board profiles: the empirical cost model's coefficients for one board, power mode and precision.

A profile is a TOML file in ``configs/boards/`` with a ``schema_version``, a ``[board]`` table, one cost
table per metric (``[energy_j]`` in joules, ``[latency_s]`` in seconds) and a mandatory ``[provenance]``
table that says where every coefficient came from.

The cost of one layer follows Lahmer et al., "Energy Consumption of Neural Networks on NVIDIA Edge
Boards: an Empirical Model" (WiOpt 2022): MACs drive the cost; a fully connected layer has one slope in
MACs; a convolution is linear in MACs with a slope that depends on its number of kernels ``K``. We model
that kernel dependence with two hardware parameters, a slope ``conv_per_mac`` and a kernel granularity
``g``: the GPU computes output channels in tiles of ``g`` kernels, so a layer with ``K`` kernels costs as
much as one with ``ceil(K / g) * g`` kernels. ``K`` counts kernels per group (output channels / groups),
since each group is computed separately: a depthwise convolution (one kernel per group) fills a tile
with a single kernel and pays ``g`` times the dense slope per MAC, as depthwise layers do in practice::

    cost_conv = conv_per_mac * macs * ceil(K / g) * g / K + static_per_layer

For a fixed ``K`` this is a line through the origin in MACs; the slope takes one value per residue of
``K`` modulo ``g``, which gives the multi-modal scatter of the paper's figure and makes channel counts
at multiples of ``g`` the efficient ones (the pruner's ``round_to``). Fully connected layers (a
linear op on a batch of vectors, as in the paper) cost ``linear_per_mac * macs + static_per_layer``:
at batch 1 they stream every weight once per MAC, so their slope is set by memory bandwidth. Matrix
products over many rows (a linear op on a token sequence or feature map, matmul, bmm, einsum,
attention) reuse each weight across rows and are compute bound like convolutions: they cost
``conv_per_mac * macs + static_per_layer`` (no kernel padding). Layers the paper does not
model (normalisation, activation, pooling, add, concat, ...) cost ``memory_per_byte * mem_bytes +
static_per_layer``. Pure views (reshape, flatten, getitem) and graph inputs/outputs cost nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .config import StrictModel, check_schema_and_provenance, load_toml_model, resolve_profile
from .errors import ConfigError
from .ops import NO_WORK_KINDS

__all__ = [
    "CONV_KINDS",
    "FC_KINDS",
    "FREE_KINDS",
    "GEMM_KINDS",
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
FREE_KINDS = NO_WORK_KINDS

class CostModel(StrictModel):
    """Coefficients of one metric (energy in J or latency in s), per the module docstring.

    Attributes:
        conv_per_mac: Cost per MAC of a convolution whose kernel count fills whole tiles.
        conv_kernel_granularity: Tile size ``g`` in kernels (output channels); 1 disables padding.
        linear_per_mac: Cost per MAC of fully connected layers and traced matrix products.
        memory_per_byte: Cost per byte read plus written by layers without MACs.
        static_per_layer: Fixed cost of every layer that launches work (dispatch, launch).
    """

    conv_per_mac: float = Field(ge=0)
    conv_kernel_granularity: int = Field(ge=1)
    linear_per_mac: float = Field(ge=0)
    memory_per_byte: float = Field(ge=0)
    static_per_layer: float = Field(default=0.0, ge=0)

    def padded_kernel_factor(self, kernels: int) -> float:
        """Return ``ceil(K / g) * g / K``: how much a conv with ``kernels`` kernels overpays per MAC."""
        if kernels <= 0:
            return 1.0
        g = self.conv_kernel_granularity
        return math.ceil(kernels / g) * g / kernels

    def layer_cost(self, kind: str, *, macs: int, mem_bytes: int, kernels: int = 0) -> float:
        """Cost of one layer of ``kind`` with ``macs`` MACs, ``mem_bytes`` moved and ``kernels``."""
        if kind in FREE_KINDS:
            return 0.0
        if kind in CONV_KINDS:
            return self.conv_per_mac * macs * self.padded_kernel_factor(kernels) + self.static_per_layer
        if kind in GEMM_KINDS:
            return self.conv_per_mac * macs + self.static_per_layer
        if kind in FC_KINDS:
            return self.linear_per_mac * macs + self.static_per_layer
        return self.memory_per_byte * mem_bytes + self.static_per_layer


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
        check_schema_and_provenance(self.schema_version, self.coefficient_keys(), self.provenance.values)
        return self

    def coefficient_keys(self) -> list[str]:
        """Dotted names of every coefficient, e.g. ``energy_j.conv_per_mac``."""
        return cost_table_keys()

    @property
    def name(self) -> str:
        """Short human name, e.g. ``NVIDIA Jetson TX2 (MAXN, fp32)``."""
        return f"{self.board.name} ({self.board.power_mode}, {self.board.precision})"


def cost_table_keys() -> list[str]:
    """Dotted names of the coefficients of an energy and a latency cost table."""
    return [f"{table}.{field}" for table in ("energy_j", "latency_s") for field in CostModel.model_fields]


def load_board(name_or_path: str | Path) -> BoardProfile:
    """Load a shipped board (``tx2``, ``xavier-nx``) or a profile TOML file by path."""
    path = resolve_profile(name_or_path, "boards")
    profile = load_toml_model(path, BoardProfile)
    if not isinstance(profile, BoardProfile):  # pragma: no cover - load_toml_model guarantees it
        raise ConfigError(f"{path}: not a board profile")
    return profile
