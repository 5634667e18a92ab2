"""The calibration figures: measured cost vs MACs with fitted lines, and network validation.

The first reproduces the paper's figure (cost vs MACs, one fitted line per kernel mode ``K mod g``)
beside the memory term; the second plots predicted against measured for whole networks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..calibrate.data import SweepData
from ..calibrate.fit import group_of
from ..calibrate.profile import TABLES, Calibration
from ..calibrate.validate import ValidationResult
from .common import save_figure

__all__ = ["plot_calibration", "plot_validation"]

_SCALE = {"latency": (1e3, "ms"), "energy": (1e3, "mJ")}


def _axis(values: list[int]) -> np.ndarray:
    positive = [v for v in values if v > 0] or [1]
    return np.geomspace(min(positive), max(positive), 100)


def plot_calibration(data: SweepData, calibration: Calibration, path: Path) -> Path:
    """One row per fitted metric: conv and FC cost vs MACs with fitted lines, memory cost vs bytes."""
    import matplotlib.pyplot as plt

    metrics = [m for m, table in TABLES.items() if table in calibration.fits]
    figure, axes = plt.subplots(len(metrics), 2, figsize=(12, 4.5 * len(metrics)), squeeze=False)
    basis = calibration.energy_basis
    for (mac_ax, mem_ax), metric in zip(axes, metrics, strict=True):
        model = getattr(calibration.profile, TABLES[metric])
        factor, unit = _SCALE[metric]
        rows = [r for r in data.layer_rows if r.value(metric, basis) is not None]
        g = model.conv_kernel_granularity
        convs = [r for r in rows if group_of(r.kind) == "conv"]
        modes = sorted({r.kernels % g for r in convs})
        colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(modes), 1)))
        line = _axis([r.macs for r in rows])
        for color, mode in zip(colors, modes, strict=False):
            members = [r for r in convs if r.kernels % g == mode]
            mac_ax.scatter(
                [r.macs for r in members],
                [(r.value(metric, basis) or 0.0) * factor for r in members],
                s=14,
                color=color,
                label=f"conv, K mod {g} = {mode}" if g > 1 else "conv",
            )
            k = members[0].kernels
            slope = model.conv_per_mac * model.padded_kernel_factor(k)
            mac_ax.plot(line, (slope * line + model.static_per_layer) * factor, color=color, lw=1)
        fcs = [r for r in rows if group_of(r.kind) == "linear"]
        mac_ax.scatter(
            [r.macs for r in fcs], [(r.value(metric, basis) or 0.0) * factor for r in fcs], s=14, c="tab:red"
        )
        fc_line = (model.linear_per_mac * line + model.static_per_layer) * factor
        mac_ax.plot(line, fc_line, color="tab:red", lw=1, label="fully connected")
        mac_ax.set(xlabel="MACs", ylabel=f"{metric} per inference ({unit})", xscale="log", yscale="log")
        mac_ax.set_title(f"{metric}: measured (points) and fitted (lines), g = {g}")
        mac_ax.legend(fontsize="small")
        memory = [r for r in rows if group_of(r.kind) == "memory"]
        kinds = sorted({r.kind for r in memory})
        for kind in kinds:
            members = [r for r in memory if r.kind == kind]
            mem_ax.scatter(
                [r.mem_bytes for r in members],
                [(r.value(metric, basis) or 0.0) * factor for r in members],
                s=14,
                label=kind,
            )
        byte_line = _axis([r.mem_bytes for r in memory])
        mem_fit = (model.memory_per_byte * byte_line + model.static_per_layer) * factor
        mem_ax.plot(byte_line, mem_fit, color="black", lw=1, label="fitted")
        mem_ax.set(xlabel="bytes moved", ylabel=f"{metric} ({unit})", xscale="log", yscale="log")
        mem_ax.set_title("layers without MACs: the memory term")
        mem_ax.legend(fontsize="small")
    figure.suptitle(calibration.profile.name)
    return save_figure(figure, path)


def plot_validation(result: ValidationResult, path: Path) -> Path:
    """Predicted against measured per network, with the y = x line and the MAPE."""
    import matplotlib.pyplot as plt

    factor, unit = _SCALE[result.metric]
    figure, ax = plt.subplots(figsize=(6.5, 6))
    measured = [r.measured * factor for r in result.rows]
    predicted = [r.predicted * factor for r in result.rows]
    ax.scatter(measured, predicted, color="tab:blue")
    for row, x, y in zip(result.rows, measured, predicted, strict=True):
        ax.annotate(f"{row.name.split(':')[-1]} ({row.error:+.0%})", (x, y), fontsize="small")
    top = max(measured + predicted) * 1.1
    ax.plot([0, top], [0, top], color="gray", lw=1, ls="--", label="predicted = measured")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"measured ({unit})", ylabel=f"predicted ({unit})")
    ax.set_title(f"{result.board}: {result.metric}, network MAPE {result.mape:.1%}")
    ax.legend(fontsize="small")
    return save_figure(figure, path)
