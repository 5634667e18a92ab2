"""The relative-error fit of one metric's :class:`~splitprune.board.CostModel`.

Minimises ``sum(((predicted - measured) / measured) ** 2)`` over non-negative coefficients, so a 20 us
layer weighs as much as a 20 ms one. For a fixed kernel granularity ``g`` the cost is linear in the
coefficients, so each candidate ``g`` is an exact small non-negative least-squares problem (every active
set is tried); ``g`` is chosen by k-fold cross-validated MAPE (``g = 1``, no tiling, is a candidate, as
on a CPU). Quality figures are cross-validated unless named ``train_``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..board import CONV_KINDS, FC_KINDS, FREE_KINDS, GEMM_KINDS, CostModel
from ..errors import DataError

__all__ = ["COEFFICIENTS", "GRANULARITIES", "FitResult", "fit_cost_model", "group_of", "predict"]

GRANULARITIES = (1, 2, 4, 8, 16, 32, 64)
COEFFICIENTS = ("conv_per_mac", "linear_per_mac", "memory_per_byte", "static_per_layer")


def group_of(kind: str) -> str:
    """Fit group of a layer kind: ``conv``, ``linear`` (FC), ``gemm`` or ``memory``."""
    if kind in CONV_KINDS:
        return "conv"
    if kind in FC_KINDS:
        return "linear"
    if kind in GEMM_KINDS:
        return "gemm"
    return "memory"


def _design(
    kinds: Sequence[str] | np.ndarray, macs: np.ndarray, mem: np.ndarray, kernels: np.ndarray, g: int
) -> np.ndarray:
    """Columns: conv_per_mac, linear_per_mac, memory_per_byte, static_per_layer (cost = X @ theta)."""
    x = np.zeros((len(kinds), 4))
    padded = np.where(kernels > 0, np.ceil(kernels / g) * g / np.maximum(kernels, 1), 1.0)
    for i, kind in enumerate(kinds):
        group = group_of(kind)
        if group == "conv":
            x[i, 0] = macs[i] * padded[i]
        elif group == "gemm":
            x[i, 0] = macs[i]
        elif group == "linear":
            x[i, 1] = macs[i]
        else:
            x[i, 2] = mem[i]
        x[i, 3] = 1.0
    return x


def _relative_nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Minimise sum(((x @ theta - y) / y) ** 2) over theta >= 0 (exact: tries every active set)."""
    a = x / y[:, None]
    scale = np.where(a.max(axis=0) > 0, a.max(axis=0), 1.0)  # condition the columns
    a = a / scale
    ones = np.ones(len(y))
    best, best_loss = np.zeros(x.shape[1]), float(len(y))
    for size in range(1, x.shape[1] + 1):
        for cols in itertools.combinations(range(x.shape[1]), size):
            sub = a[:, cols]
            if not sub.any():
                continue
            theta, *_ = np.linalg.lstsq(sub, ones, rcond=None)
            if (theta < 0).any():
                continue
            loss = float(np.sum((sub @ theta - 1.0) ** 2))
            if loss < best_loss - 1e-12:
                best = np.zeros(x.shape[1])
                best[list(cols)] = theta
                best_loss = loss
    return best / scale


def _quality(
    groups: np.ndarray, y: np.ndarray, pred: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    mape, r2 = {}, {}
    for name in [*sorted(set(groups.tolist())), "all"]:
        mask = np.ones(len(y), bool) if name == "all" else groups == name
        yy, pp = y[mask], pred[mask]
        mape[name] = float(np.mean(np.abs(pp / yy - 1.0)))
        total = float(np.sum((yy - yy.mean()) ** 2))
        r2[name] = 1.0 - float(np.sum((yy - pp) ** 2)) / total if total > 0 else math.nan
    return mape, r2


@dataclass(frozen=True)
class FitResult:
    """One metric's fitted coefficients and how well they fit.

    Attributes:
        coefficients: ``CostModel`` fields (cost per MAC / per byte / per layer in the metric's unit).
        points: Layer rows fitted.
        folds: Cross-validation folds.
        cv_mape: Cross-validated mean absolute percentage error (as a fraction) per group and ``all``.
        cv_r2: Cross-validated R² per group and ``all``.
        train_mape: In-sample MAPE of the final fit per group and ``all``.
        granularity_cv_mape: Cross-validated MAPE of every candidate granularity (the minimum wins).
    """

    coefficients: dict[str, float]
    points: int
    folds: int
    cv_mape: dict[str, float]
    cv_r2: dict[str, float]
    train_mape: dict[str, float]
    granularity_cv_mape: dict[str, float] = field(default_factory=dict)

    def cost_model(self) -> CostModel:
        """The coefficients as a validated :class:`CostModel`."""
        c = self.coefficients
        return CostModel(
            conv_per_mac=c["conv_per_mac"],
            conv_kernel_granularity=int(c["conv_kernel_granularity"]),
            linear_per_mac=c["linear_per_mac"],
            memory_per_byte=c["memory_per_byte"],
            static_per_layer=c["static_per_layer"],
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return asdict(self)


def fit_cost_model(
    kinds: Sequence[str],
    macs: Sequence[int],
    mem_bytes: Sequence[int],
    kernels: Sequence[int],
    measured: Sequence[float],
    *,
    granularities: Sequence[int] = GRANULARITIES,
    folds: int = 5,
    seed: int = 0,
) -> FitResult:
    """Fit the paper-form cost model to per-layer measurements (see the module docstring).

    Args:
        kinds: Layer kind of every row (graph names: conv, linear, bn, act, pool, add ...).
        macs: MACs of every row.
        mem_bytes: Bytes moved by every row.
        kernels: Conv output channels of every row (0 otherwise).
        measured: Measured cost of every row (seconds or joules per inference, positive).
        granularities: Candidate kernel granularities.
        folds: Cross-validation folds (fewer if there are fewer rows).
        seed: Seed of the fold assignment.

    Raises:
        DataError: Too few rows, a non-positive measurement, or a layer group the model needs is absent.
    """
    keep = [i for i, k in enumerate(kinds) if k not in FREE_KINDS]
    kinds_arr = np.array([kinds[i] for i in keep], dtype=object)
    y = np.asarray(measured, float)[keep]
    m, b, k = (np.asarray(v, float)[keep] for v in (macs, mem_bytes, kernels))
    if len(y) < 8 or not (y > 0).all() or not np.isfinite(y).all():
        raise DataError(f"need at least 8 layer rows with positive measurements, got {len(y)}")
    groups = np.array([group_of(kind) for kind in kinds_arr])
    for needed in ("conv", "linear", "memory"):
        if needed not in groups:
            raise DataError(f"no {needed} layers in the sweep; add them to the grid and measure again")
    folds = max(2, min(folds, len(y)))
    fold_of = np.random.default_rng(seed).permutation(len(y)) % folds
    scores: dict[int, tuple[float, np.ndarray]] = {}
    for g in granularities:
        x = _design(kinds_arr, m, b, k, g)
        pred = np.empty(len(y))
        for f in range(folds):
            test = fold_of == f
            pred[test] = x[test] @ _relative_nnls(x[~test], y[~test])
        scores[g] = (float(np.mean(np.abs(pred / y - 1.0))), pred)
    best_g = min(scores, key=lambda g: (scores[g][0], g))
    x = _design(kinds_arr, m, b, k, best_g)
    theta = _relative_nnls(x, y)
    cv_mape, cv_r2 = _quality(groups, y, scores[best_g][1])
    train_mape, _ = _quality(groups, y, x @ theta)
    coefficients = dict(zip(COEFFICIENTS, (float(v) for v in theta), strict=True))
    coefficients["conv_kernel_granularity"] = best_g
    return FitResult(
        coefficients=coefficients,
        points=len(y),
        folds=folds,
        cv_mape=cv_mape,
        cv_r2=cv_r2,
        train_mape=train_mape,
        granularity_cv_mape={str(g): s for g, (s, _) in scores.items()},
    )


def predict(
    model: CostModel,
    kinds: Sequence[str],
    macs: Sequence[int],
    mem_bytes: Sequence[int],
    kernels: Sequence[int],
) -> np.ndarray:
    """Cost of every row under ``model`` (what :meth:`CostModel.layer_cost` gives, vectorised)."""
    return np.array(
        [
            model.layer_cost(kind, macs=int(m), mem_bytes=int(b), kernels=int(k))
            for kind, m, b, k in zip(kinds, macs, mem_bytes, kernels, strict=True)
        ]
    )
