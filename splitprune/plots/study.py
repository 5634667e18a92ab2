"""Study figures: energy against latency per board, and each model's energy-latency Pareto front."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .common import save_figure

__all__ = ["plot_study"]


def _points(rows: list[dict[str, Any]]) -> list[tuple[float, float, dict[str, Any]]]:
    out = []
    for row in rows:
        energy, latency = row.get("energy_j", math.nan), row.get("latency_s", math.nan)
        numbers = isinstance(energy, (int, float)) and isinstance(latency, (int, float))
        if row.get("status") == "ok" and numbers and math.isfinite(energy) and math.isfinite(latency):
            out.append((float(energy), float(latency), row))
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats in both energy and latency, by increasing energy."""
    front: list[tuple[float, float]] = []
    for energy, latency in sorted(set(points)):
        if not front or latency < front[-1][1]:
            front.append((energy, latency))
    return front


def plot_study(rows: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """Write ``energy_latency.png`` (one panel per board) and ``pareto.png`` (one front per model).

    Returns the paths written (nothing when no row has both figures).
    """
    import matplotlib.pyplot as plt

    points = _points(rows)
    if not points:
        return {}
    boards = sorted({str(r["board"]) for _, _, r in points})
    models = sorted({str(r["model"]) for _, _, r in points})
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    figure, axes = plt.subplots(1, len(boards), figsize=(5.2 * len(boards), 4.2), squeeze=False)
    for ax, board in zip(axes[0], boards, strict=True):
        for model in models:
            mine = [(e, t) for e, t, r in points if r["board"] == board and r["model"] == model]
            if mine:
                ax.scatter([t * 1e3 for _, t in mine], [e * 1e3 for e, _ in mine], s=14, color=colors[model],
                           label=model, alpha=0.8)
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("energy per inference (mJ)")
        ax.set_title(board)
        ax.set_xscale("log")
        ax.set_yscale("log")
    axes[0][0].legend(fontsize="x-small")
    paths = {"energy_latency": save_figure(figure, Path(out) / "energy_latency.png")}
    figure, ax = plt.subplots(figsize=(6.5, 4.5))
    for model in models:
        front = pareto_front([(e, t) for e, t, r in points if r["model"] == model])[::-1]  # by latency
        ax.step([t * 1e3 for _, t in front], [e * 1e3 for e, _ in front], where="post", marker="o",
                markersize=3, color=colors[model], label=model)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("energy per inference (mJ)")
    ax.set_title("Pareto front of each model (all boards, links and rates)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize="x-small")
    paths["pareto"] = save_figure(figure, Path(out) / "pareto.png")
    return paths
