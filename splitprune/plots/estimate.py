"""The estimate figure: per-layer energy, cumulative energy and the size of a cut along the network."""

from __future__ import annotations

from pathlib import Path

from ..graph import LayerGraph, cut_bytes_along_order
from .common import save_figure

__all__ = ["plot_estimate"]


def plot_estimate(graph: LayerGraph, path: Path) -> Path:
    """Draw per-layer energy bars and, along topological order, cumulative energy and cut size."""
    import matplotlib.pyplot as plt

    energy_mj = [graph.nodes[n]["energy_j"] * 1e3 for n in graph.order]
    cumulative_mj, running = [], 0.0
    for value in energy_mj:
        running += value
        cumulative_mj.append(running)
    cut_kb = [b / 1024 for b in cut_bytes_along_order(graph)]
    positions = range(len(graph.order))

    figure, (bars, lines) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True)
    colors = {"conv": "tab:blue", "linear": "tab:red", "matmul": "tab:purple", "attention": "tab:purple"}
    bars.bar(
        positions,
        energy_mj,
        color=[colors.get(graph.nodes[n]["kind"], "tab:gray") for n in graph.order],
        width=0.9,
    )
    bars.set_ylabel("layer energy (mJ)")
    bars.set_title(f"{graph.name} on {graph.board}: {graph.total_energy_j * 1e3:.1f} mJ per inference")
    legend_colors = ("tab:blue", "tab:red", "tab:purple", "tab:gray")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in legend_colors]
    bars.legend(handles, ["conv", "linear (FC)", "matmul / attention", "other"], ncol=4, fontsize="small")

    lines.plot(positions, cumulative_mj, color="tab:green", label="energy so far (mJ)")
    lines.set_ylabel("cumulative energy (mJ)", color="tab:green")
    lines.set_xlabel("layer (topological order)")
    size_axis = lines.twinx()
    size_axis.step(positions, cut_kb, where="post", color="tab:orange", label="tensor crossing a cut (KB)")
    size_axis.set_yscale("log")
    size_axis.set_ylabel("bytes crossing a cut here (KB)", color="tab:orange")
    figure.tight_layout()
    return save_figure(figure, path)
