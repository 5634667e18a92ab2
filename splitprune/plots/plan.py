"""The plan figure: objective against pruning cost, the Pareto front with both baselines marked."""

from __future__ import annotations

from pathlib import Path

from ..plan.result import PlanSweep
from .common import save_figure

__all__ = ["plot_plan"]


def plot_plan(sweep: PlanSweep, path: Path) -> Path:
    """Draw the joint Pareto front, the prune-only curve and the split-only point (one panel per rate).

    With a sweep, at most four rates are drawn (spread over the range).
    """
    import matplotlib.pyplot as plt

    plans = list(sweep.plans)
    if len(plans) > 4:
        plans = [plans[round(i * (len(plans) - 1) / 3)] for i in range(4)]
    figure, axes = plt.subplots(1, len(plans), figsize=(5.2 * len(plans), 4.2), squeeze=False)
    scale, unit = 1e3, "mJ" if sweep.objective == "energy" else "ms"
    label = "device energy (compute + radio)" if sweep.objective == "energy" else "end-to-end latency"
    budget = sweep.constraints.get("energy_budget_j" if sweep.objective == "energy" else "deadline_s")
    for ax, result in zip(axes[0], plans, strict=True):
        front = result.pareto
        ax.step([p.saliency_removed for p in front], [p.value(sweep.objective) * scale for p in front],
                where="post", marker="o", color="tab:blue", label="joint (Pareto front)")
        curve = result.prune_only_curve
        ax.plot([p.saliency_removed for p in curve], [p.value(sweep.objective) * scale for p in curve],
                marker="s", linestyle="--", color="tab:orange", label="prune-only (all local)")
        unpruned = [p for p in front if p.state == 0] or [p for p in curve if p.state == 0]
        for p in unpruned[:1]:
            ax.scatter([0.0], [p.value(sweep.objective) * scale], marker="D", s=60, color="tab:green",
                       zorder=3, label="split-only (unpruned, exact split)")
        best = result.best
        ax.scatter([best.saliency_removed], [best.value(sweep.objective) * scale], marker="*", s=220,
                   color="tab:red", zorder=4, label=f"plan: {result.label}\n(found on {result.trajectory})")
        if budget is not None:
            ax.axhline(budget * scale, color="tab:gray", linestyle=":", label="budget")
        ax.set_xlabel("saliency removed (fraction of the model's)")
        ax.set_ylabel(f"{label} ({unit})")
        ax.set_title(f"{result.link.rate_bps / 1e6:.4g} Mbit/s", fontsize="small")
        ax.legend(fontsize="x-small")
    figure.suptitle(f"{sweep.model} on {sweep.board} over {sweep.link_name}", fontsize="small")
    return save_figure(figure, path)
