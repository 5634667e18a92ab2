"""Fit one board's cost tables to per-layer measurements (the model is in :mod:`splitprune.board`).

**Latency** is fitted by non-linear least squares on ``log(predicted / measured)`` (so a 20 us layer
weighs as much as a 20 ms one): the roofline slopes, ``static_per_layer`` and, for an eager sweep, one
launch floor per layer kind present, combined by the smooth maximum. **Energy** is linear in its
coefficients once the layer's time is known: ``static_power_w * measured latency`` plus the MAC, byte
and per-op terms, fitted by exact non-negative least squares on relative residuals (every active set
is tried). For each table the kernel granularity ``g`` is chosen by k-fold cross-validated MAPE
(``g = 1``, no tiling, is a candidate). Quality figures are cross-validated unless named ``train_``.

Kinds a sweep did not measure borrow a related kind's coefficient (:data:`FLOOR_FALLBACK`, GEMMs the
conv slope); :attr:`FitResult.fallbacks` names each borrowing so the caller can warn.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..board import CONV_KINDS, FC_KINDS, GEMM_KINDS, CostModel, GemmShape
from ..errors import DataError
from ..ops import NO_WORK_KINDS

__all__ = [
    "FLOOR_FALLBACK",
    "GRANULARITIES",
    "FitResult",
    "LayerData",
    "fit_energy",
    "fit_latency",
    "group_of",
]

GRANULARITIES = (1, 2, 4, 8, 16, 32, 64)
FLOOR_FALLBACK: dict[str, tuple[str, float]] = {
    "matmul": ("linear", 1.0),
    "norm": ("bn", 1.0),
    "softmax": ("act", 1.0),
    "mul": ("add", 1.0),
    "cat": ("add", 1.0),
    "reduce": ("pool", 1.0),
}
"""Kind -> (measured kind whose launch floor it borrows, multiple), for single-dispatch kinds. Other
unmeasured kinds (attention, ``other``) pay ``launch_floor["default"]`` per ATen op they dispatch."""
_MEMORY_DEFAULT = ("bn", "act", "add", "pool")
Tiles = tuple[int, int, float]
"""``(tile_rows, concurrent_tiles, output_overhead_macs)`` of the tile model; :data:`NO_TILES` pads only
kernels (schema 2)."""
NO_TILES: Tiles = (1, 0, 0.0)


def _tiling_probe(g: int, tiles: Tiles) -> CostModel:
    return CostModel(
        conv_per_mac=1.0,
        conv_kernel_granularity=g,
        linear_per_mac=1.0,
        memory_per_byte=0.0,
        tile_rows=tiles[0],
        concurrent_tiles=tiles[1],
        output_overhead_macs=tiles[2],
    )


def tiling_candidates(sm_count: int | None) -> list[tuple[int, Tiles]]:
    """Granularity and wave settings to choose from.

    Kernel padding alone at every granularity, and, where the sweep knows the GPU's SM count, 64-row
    tiles with two per SM at 32, 64 and 128 columns.
    """
    plain = [(g, NO_TILES) for g in GRANULARITIES]
    if not sm_count:
        return plain
    return plain + [(g, (64, 2 * sm_count, 0.0)) for g in (32, 64, 128)]


_SLOTS = ("conv", "linear", "gemm", "memory", "static")


def group_of(kind: str) -> str:
    """Fit group of a layer kind: ``conv``, ``linear`` (FC), ``gemm`` or ``memory``."""
    if kind in CONV_KINDS:
        return "conv"
    if kind in FC_KINDS:
        return "linear"
    if kind in GEMM_KINDS:
        return "gemm"
    return "memory"


@dataclass(frozen=True)
class LayerData:
    """Measured single layers, as arrays.

    Attributes:
        kinds: Graph layer kind of every row.
        macs: MACs of every row.
        mem_bytes: Bytes read plus written.
        kernels: Conv kernels per group (0 otherwise).
        latency_s: Measured seconds per call.
        energy_j: Measured joules per call (``None`` without a power sensor).
    """

    kinds: tuple[str, ...]
    macs: np.ndarray
    mem_bytes: np.ndarray
    kernels: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray | None = None
    shapes: tuple[GemmShape | None, ...] = ()

    def shape(self, i: int) -> GemmShape | None:
        """GEMM shape of row ``i`` (None where unknown)."""
        return self.shapes[i] if self.shapes else None

    @staticmethod
    def of(
        kinds: Sequence[str],
        macs: Sequence[float],
        mem_bytes: Sequence[float],
        kernels: Sequence[float],
        latency_s: Sequence[float],
        energy_j: Sequence[float] | None = None,
        shapes: Sequence[GemmShape | None] | None = None,
    ) -> LayerData:
        """Build from plain sequences, dropping kinds that cost nothing and checking the values.

        Raises:
            DataError: Fewer than 8 rows, or a measurement that is not a positive finite number.
        """
        keep = [i for i, k in enumerate(kinds) if k not in NO_WORK_KINDS]

        def arr(values: Sequence[float]) -> np.ndarray:
            return np.asarray(values, float)[keep]

        data = LayerData(
            kinds=tuple(kinds[i] for i in keep),
            macs=arr(macs),
            mem_bytes=arr(mem_bytes),
            kernels=arr(kernels),
            latency_s=arr(latency_s),
            energy_j=None if energy_j is None else arr(energy_j),
            shapes=() if shapes is None else tuple(shapes[i] for i in keep),
        )
        for name, values in (("latency", data.latency_s), ("energy", data.energy_j)):
            if values is not None and not (np.isfinite(values).all() and (values > 0).all()):
                raise DataError(f"{name} measurements must be positive and finite; drop the bad rows first")
        if len(data.kinds) < 8:
            raise DataError(f"need at least 8 layer rows to fit, got {len(data.kinds)}; measure more layers")
        return data

    def groups(self) -> np.ndarray:
        """Fit group of every row."""
        return np.array([group_of(k) for k in self.kinds])

    def work(self, g: int, tiles: Tiles = NO_TILES) -> np.ndarray:
        """Columns conv and gemm (MACs padded to whole tiles and waves), linear MACs, bytes, 1."""
        x = np.zeros((len(self.kinds), len(_SLOTS)))
        probe = _tiling_probe(g, tiles)
        for i, group in enumerate(self.groups()):
            if group != "memory":
                factor = probe.tiled_factor(
                    self.kinds[i], macs=int(self.macs[i]), kernels=int(self.kernels[i]), shape=self.shape(i)
                )
                x[i, _SLOTS.index(group)] = self.macs[i] * (factor if group in ("conv", "gemm") else 1.0)
        x[:, 3] = self.mem_bytes
        x[:, 4] = 1.0
        return x

    def outputs(self, g: int, tiles: Tiles = NO_TILES) -> np.ndarray:
        """Padded outputs of every conv row (column 0) and GEMM row (column 1).

        They are what a per-output overhead multiplies (0 where the reduction is a single MAC, as in a
        depthwise conv).
        """
        out = np.zeros((len(self.kinds), 2))
        probe = _tiling_probe(g, (tiles[0], tiles[1], 0.0))
        for i, group in enumerate(self.groups()):
            shape = self.shape(i)
            if group not in ("conv", "gemm") or shape is None or self.macs[i] <= 0:
                continue
            batches, rows, cols = shape
            per_group = int(self.kernels[i]) if group == "conv" and self.kernels[i] > 0 else cols
            if per_group <= 1 or rows <= 0:
                continue
            factor = probe.tiled_factor(self.kinds[i], macs=int(self.macs[i]), kernels=int(self.kernels[i]),
                                        shape=shape)  # fmt: skip
            out[i, 0 if group == "conv" else 1] = batches * rows * cols * factor
        return out

    def subset(self, mask: np.ndarray) -> LayerData:
        """Rows where ``mask`` is true."""
        return LayerData(
            kinds=tuple(k for k, m in zip(self.kinds, mask, strict=True) if m),
            macs=self.macs[mask],
            mem_bytes=self.mem_bytes[mask],
            kernels=self.kernels[mask],
            latency_s=self.latency_s[mask],
            energy_j=None if self.energy_j is None else self.energy_j[mask],
            shapes=tuple(s for s, m in zip(self.shapes, mask, strict=True) if m) if self.shapes else (),
        )

    def predict(self, model: CostModel, *, latency: CostModel | None = None) -> np.ndarray:
        """Every row's cost under ``model``.

        Its latency formula, or with ``latency`` (the time table the energy's static power runs over)
        its energy formula.
        """
        out = []
        rows = zip(self.kinds, self.macs, self.mem_bytes, self.kernels, strict=True)
        for i, (k, m, b, kk) in enumerate(rows):
            sizes: dict[str, Any] = {"macs": int(m), "mem_bytes": int(b), "kernels": int(kk),
                                     "shape": self.shape(i)}
            if latency is None:
                out.append(model.latency_cost(k, **sizes))
            else:
                out.append(model.energy_cost(k, latency_s=latency.latency_cost(k, **sizes), **sizes))
        return np.array(out)


@dataclass(frozen=True)
class FitResult:
    """One table's fitted coefficients and how well they fit.

    Attributes:
        model: The fitted cost table.
        points: Layer rows fitted.
        folds: Cross-validation folds.
        cv_mape: Cross-validated mean absolute percentage error (a fraction) per group and ``all``.
        train_mape: In-sample MAPE of the final fit per group and ``all``.
        granularity_cv_mape: Cross-validated MAPE of every candidate granularity (the minimum wins).
        fallbacks: Coefficients borrowed from a related kind because the sweep lacks a kind, as
            ``name -> what it borrowed``.
    """

    model: CostModel
    points: int
    folds: int
    cv_mape: dict[str, float]
    train_mape: dict[str, float]
    granularity_cv_mape: dict[str, float] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)

    @property
    def coefficients(self) -> dict[str, Any]:
        """The table's coefficients as plain data."""
        return self.model.model_dump()

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        out = asdict(self)
        out["model"] = self.coefficients
        return out


def _mape_by_group(groups: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    out = {}
    for name in [*sorted(set(groups.tolist())), "all"]:
        mask = np.ones(len(y), bool) if name == "all" else groups == name
        out[name] = float(np.mean(np.abs(pred[mask] / y[mask] - 1.0)))
    return out


def _relative_nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Minimise sum(((x @ theta - y) / y) ** 2) over theta >= 0 (exact: tries every active set)."""
    a = x / y[:, None]
    scale = np.where(a.max(axis=0) > 0, a.max(axis=0), 1.0)
    a = a / scale
    ones = np.ones(len(y))
    best, best_loss = np.zeros(x.shape[1]), float(len(y))
    live = [c for c in range(x.shape[1]) if a[:, c].any()]
    for size in range(1, len(live) + 1):
        for cols in itertools.combinations(live, size):
            theta, *_ = np.linalg.lstsq(a[:, cols], ones, rcond=None)
            if (theta < 0).any():
                continue
            loss = float(np.sum((a[:, cols] @ theta - 1.0) ** 2))
            if loss < best_loss - 1e-12:
                best = np.zeros(x.shape[1])
                best[list(cols)] = theta
                best_loss = loss
    return best / scale


# -- latency -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LatencyForm:
    """The latency model's parameter layout for one data set: slopes, static, then one floor per kind."""

    floor_kinds: tuple[str, ...]
    overlap: bool = True
    outputs: np.ndarray | None = None  # per-row padded outputs (conv, gemm): theta's last entry is k0

    def predict(self, theta: np.ndarray, x: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
        from ..board import SMOOTH_MAX_EXPONENT

        compute = x[:, :3] @ theta[:3]
        if self.outputs is not None:
            compute = compute + theta[-1] * (self.outputs[:, 0] * theta[0] + self.outputs[:, 1] * theta[2])
        gpu = np.maximum(compute, x[:, 3] * theta[3]) + theta[4]
        if not self.floor_kinds:
            return gpu
        floors = dict(zip(self.floor_kinds, theta[5 : 5 + len(self.floor_kinds)], strict=True))
        cpu = np.array([floors[k] for k in kinds])
        if not self.overlap:
            return cpu + gpu
        top = np.maximum(np.maximum(cpu, gpu), 1e-30)
        p = SMOOTH_MAX_EXPONENT
        return top * ((cpu / top) ** p + (gpu / top) ** p) ** (1.0 / p)


def _solve_latency(
    data: LayerData,
    g: int,
    with_floors: bool,
    overlap: bool,
    tiles: Tiles = NO_TILES,
    fit_overhead: bool = False,
) -> np.ndarray:
    """Latency coefficients.

    The layout is the 5 work slots, one floor per kind, then (``fit_overhead``) the per-output overhead
    in MACs.
    """
    from scipy.optimize import least_squares

    x, y = data.work(g, tiles), data.latency_s
    outputs = data.outputs(g, tiles) if fit_overhead else None
    if outputs is not None and not outputs.any():
        outputs = None
    form = _LatencyForm(tuple(sorted(set(data.kinds))) if with_floors else (), overlap, outputs)
    start = np.empty(5 + len(form.floor_kinds) + (outputs is not None))
    for j in range(4):
        rows = x[:, j] > 0
        start[j] = float(np.median(y[rows] / x[rows, j])) * 0.5 if rows.any() else 1.0
    start[4] = float(np.min(y)) * 0.1
    for j, kind in enumerate(form.floor_kinds):
        start[5 + j] = float(np.min(y[[k == kind for k in data.kinds]]))
    used = np.array([(x[:, j] > 0).any() for j in range(4)] + [True] * (1 + len(form.floor_kinds)))
    if outputs is not None:
        start[-1] = 256.0
        used = np.append(used, True)

    def residual(u: np.ndarray) -> np.ndarray:
        return np.log(form.predict(np.where(used, u * start, 0.0), x, data.kinds) / y)

    solution = least_squares(residual, np.ones_like(start), bounds=(0.0, np.inf), x_scale=1.0)
    theta = np.where(used, solution.x * start, 0.0)
    return theta if fit_overhead == (outputs is not None) else np.append(theta, 0.0)


def _work_terms(theta: np.ndarray, g: int, tiles: Tiles = NO_TILES) -> dict[str, Any]:
    """The cost-table fields of the work columns (:data:`_SLOTS` order) in ``theta``."""
    waves: dict[str, Any] = {}
    if tiles[:2] != NO_TILES[:2]:
        waves.update(tile_rows=tiles[0], concurrent_tiles=tiles[1])
    if tiles[2]:
        waves["output_overhead_macs"] = tiles[2]
    return {
        **waves,
        "conv_per_mac": float(theta[0]),
        "conv_kernel_granularity": g,
        "linear_per_mac": float(theta[1]),
        "gemm_per_mac": float(theta[2]) if theta[2] > 0 else None,
        "memory_per_byte": float(theta[3]),
        "static_per_layer": float(theta[4]),
    }


def _latency_model(
    theta: np.ndarray, g: int, floor_kinds: Sequence[str], overlap: bool, tiles: Tiles = NO_TILES
) -> CostModel:
    floors = {k: float(v) for k, v in zip(floor_kinds, theta[5 : 5 + len(floor_kinds)], strict=True)}
    if len(theta) > 5 + len(floor_kinds):  # a fitted per-output overhead
        tiles = (tiles[0], tiles[1], float(theta[-1]))
    return CostModel(**_work_terms(theta[:5], g, tiles), launch_floor=floors, dispatch_overlaps=overlap)


def _complete(
    theta: np.ndarray, g: int, data: LayerData, with_floors: bool, overlap: bool, tiles: Tiles = NO_TILES
) -> tuple[CostModel, dict[str, str]]:
    """The latency table of ``theta``, with borrowed floors for the kinds ``data`` lacks."""
    measured = tuple(sorted(set(data.kinds))) if with_floors else ()
    model = _latency_model(theta, g, measured, overlap, tiles)
    if not with_floors:
        return model, {}
    floors = dict(model.launch_floor)
    borrowed = _fill_floors(floors, set(measured))
    return model.model_copy(update={"launch_floor": floors}), borrowed


def _fill_floors(floors: dict[str, float], measured: set[str]) -> dict[str, str]:
    """Add borrowed floors for unmeasured kinds and a ``default``; return what was borrowed."""
    borrowed = {}
    memory = [floors[k] for k in _MEMORY_DEFAULT if k in floors] or list(floors.values())
    floors["default"] = float(np.median(memory))
    borrowed["launch_floor.default"] = "per ATen op dispatched: median of the measured floors of " + (
        ", ".join(k for k in _MEMORY_DEFAULT if k in floors) or ", ".join(sorted(measured))
    )
    for kind, (source, factor) in FLOOR_FALLBACK.items():
        if kind in measured:
            continue
        if source in floors:
            floors[kind] = floors[source] * factor
            borrowed[f"launch_floor.{kind}"] = f"{factor:g} x launch_floor.{source} ({kind} not measured)"
    return borrowed


def _folds(n: int, folds: int, seed: int) -> tuple[np.ndarray, int]:
    folds = max(2, min(folds, n))
    return np.random.default_rng(seed).permutation(n) % folds, folds


def fit_latency(
    data: LayerData,
    *,
    with_floors: bool = True,
    overlap: bool = True,
    granularities: Sequence[int] = GRANULARITIES,
    folds: int = 5,
    seed: int = 0,
    tiles: Tiles = NO_TILES,
    fit_overhead: bool = False,
) -> FitResult:
    """Fit the latency table (roofline + launch floors) to ``data`` (see the module docstring).

    Args:
        data: Measured layers.
        with_floors: Fit a launch floor per kind (an eager sweep); off for a CUDA-graph sweep.
        overlap: Dispatch overlaps the work (a GPU); false on a CPU, where they add up.
        granularities: Candidate kernel granularities.
        folds: Cross-validation folds (fewer if there are fewer rows).
        seed: Seed of the fold assignment.
        tiles: Wave-model tiling (:data:`NO_TILES`: kernel padding only).
        fit_overhead: Also fit ``output_overhead_macs``, the cost of each conv/GEMM output in MACs.

    Raises:
        DataError: A layer group the model needs (conv, memory) is absent.
    """
    groups = data.groups()
    for needed in ("conv", "memory"):
        if needed not in groups:
            raise DataError(f"no {needed} layers in the sweep; add them to the grid and measure again")
    fold_of, folds = _folds(len(data.kinds), folds, seed)
    scores: dict[int, tuple[float, np.ndarray]] = {}
    for g in granularities:
        pred = np.empty(len(data.kinds))
        for f in range(folds):
            train, test = data.subset(fold_of != f), data.subset(fold_of == f)
            theta = _solve_latency(train, g, with_floors, overlap, tiles, fit_overhead)
            model = _complete(theta, g, train, with_floors, overlap, tiles)[0]
            pred[fold_of == f] = test.predict(model)
        scores[g] = (float(np.mean(np.abs(pred / data.latency_s - 1.0))), pred)
    best_g = min(scores, key=lambda g: (scores[g][0], g))
    theta = _solve_latency(data, best_g, with_floors, overlap, tiles, fit_overhead)
    model, fallbacks = _complete(theta, best_g, data, with_floors, overlap, tiles)
    if "gemm" not in groups:
        fallbacks["gemm_per_mac"] = "conv_per_mac (no matmul or attention layers measured)"
    if "linear" not in groups:
        fallbacks["linear_per_mac"] = "0: no fully connected layers measured; FC layers cost their bytes"
    return FitResult(
        model=model,
        points=len(data.kinds),
        folds=folds,
        cv_mape=_mape_by_group(groups, data.latency_s, scores[best_g][1]),
        train_mape=_mape_by_group(groups, data.latency_s, _predict(model, data)),
        granularity_cv_mape={str(g): s for g, (s, _) in scores.items()},
        fallbacks=fallbacks,
    )


def _predict(model: CostModel, data: LayerData, latency: CostModel | None = None) -> np.ndarray:
    return data.predict(model, latency=latency)


# -- energy --------------------------------------------------------------------------------------


def _energy_design(data: LayerData, g: int, with_static_power: bool, tiles: Tiles = NO_TILES) -> np.ndarray:
    x = data.work(g, tiles)
    seconds = data.latency_s if with_static_power else np.zeros(len(data.kinds))
    return np.column_stack([seconds, x])


def _energy_model(theta: np.ndarray, g: int, tiles: Tiles = NO_TILES) -> CostModel:
    return CostModel(static_power_w=float(theta[0]), **_work_terms(theta[1:], g, tiles))


def fit_energy(
    data: LayerData,
    latency: CostModel,
    *,
    with_static_power: bool = True,
    granularities: Sequence[int] = GRANULARITIES,
    folds: int = 5,
    seed: int = 0,
    tiles: Tiles = NO_TILES,
) -> FitResult:
    """Fit the energy table: static power over each layer's measured time plus its work.

    Quality figures predict with ``latency`` (the fitted time), as estimates do.

    Args:
        data: Measured layers with energy.
        latency: The fitted latency table the energy table will be coupled with.
        with_static_power: Fit ``static_power_w`` (off: energy from work alone, schema 1's form).
        granularities: Candidate kernel granularities.
        folds: Cross-validation folds.
        seed: Seed of the fold assignment.
        tiles: Wave-model tiling of the work columns (:data:`NO_TILES`: kernel padding only).

    Raises:
        DataError: The data has no energy.
    """
    if data.energy_j is None:
        raise DataError("the sweep measured no energy; use a power sensor or fit latency only")
    y, groups = data.energy_j, data.groups()
    fold_of, folds = _folds(len(y), folds, seed)
    scores: dict[int, tuple[float, np.ndarray]] = {}

    def coupled(theta: np.ndarray, g: int) -> CostModel:
        return _energy_model(theta, g, tiles)

    for g in granularities:
        x = _energy_design(data, g, with_static_power, tiles)
        pred = np.empty(len(y))
        for f in range(folds):
            test = fold_of == f
            pred[test] = _predict(coupled(_relative_nnls(x[~test], y[~test]), g), data.subset(test), latency)
        scores[g] = (float(np.mean(np.abs(pred / y - 1.0))), pred)
    best_g = min(scores, key=lambda g: (scores[g][0], g))
    model = coupled(_relative_nnls(_energy_design(data, best_g, with_static_power, tiles), y), best_g)
    fallbacks = {}
    if "gemm" not in groups:
        fallbacks["gemm_per_mac"] = "conv_per_mac (no matmul or attention layers measured)"
    return FitResult(
        model=model,
        points=len(y),
        folds=folds,
        cv_mape=_mape_by_group(groups, y, scores[best_g][1]),
        train_mape=_mape_by_group(groups, y, _predict(model, data, latency)),
        granularity_cv_mape={str(g): s for g, (s, _) in scores.items()},
        fallbacks=fallbacks,
    )
