"""The prune figure: per-layer energy before/after, and the estimate along the pruning steps."""

from __future__ import annotations

from pathlib import Path

from ..prune.result import PruneResult
from .common import save_figure

__all__ = ["plot_prune"]


def plot_prune(result: PruneResult, path: Path) -> Path:
    """Draw conv/linear/attention layer energy before and after pruning, and the per-step trajectory."""
    import matplotlib.pyplot as plt

    rows = [r for r in result.layers if r.kind in ("conv", "linear", "matmul", "attention")]
    positions = range(len(rows))
    figure, (bars, steps) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 1]})
    left = [p - 0.2 for p in positions]
    right = [p + 0.2 for p in positions]
    bars.bar(left, [r.energy_before_j * 1e3 for r in rows], 0.4, color="tab:gray", label="before")
    bars.bar(right, [r.energy_after_j * 1e3 for r in rows], 0.4, color="tab:blue", label="after")
    padding = [r.padding_after_j * 1e3 for r in rows]
    if any(padding):
        bars.bar(right, padding, 0.4, color="tab:red", label="idle kernel slots (after)")
    bars.set_xticks(list(positions))
    bars.set_xticklabels([r.module or r.name for r in rows], rotation=90, fontsize=6)
    bars.set_ylabel("layer energy (mJ)")
    bars.set_title(
        f"{result.model_name} on {result.board}: {result.energy_before_j * 1e3:.1f} -> "
        f"{result.energy_after_j * 1e3:.1f} mJ ({result.importance}, round_to={result.round_to})"
    )
    bars.legend(fontsize="small")

    scale, unit = (1e3, "mJ") if result.metric == "energy_j" else (1e3, "ms")
    steps.plot(range(len(result.trajectory)), [v * scale for v in result.trajectory], marker="o")
    steps.axhline(result.budget * scale, color="tab:red", linestyle="--", label="budget")
    steps.set_xlabel("step")
    steps.set_ylabel(f"estimate ({unit})")
    steps.legend(fontsize="small")
    return save_figure(figure, path)
