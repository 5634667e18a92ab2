"""The split figure: the trade-off along the network, and the bandwidth policy when swept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .common import save_figure

__all__ = ["plot_split", "prefix_tradeoff"]


def prefix_tradeoff(result: Any) -> tuple[np.ndarray, np.ndarray]:
    """For a cut after each node in topological order: device energy so far and transmission energy.

    Transmission counts every tensor made at or before the cut and read after it (its ``wire_bytes``),
    at the result's link figures (``energy_per_byte_j`` per byte, ``energy_per_message_j`` per tensor).
    """
    rows = result.nodes
    position = {row["name"]: i for i, row in enumerate(rows)}
    last_use = np.full(len(rows), -1)
    for i, row in enumerate(rows):
        for pred in row["inputs"]:
            last_use[position[pred]] = max(last_use[position[pred]], i)
    device = np.cumsum([row["energy_j"] for row in rows])
    link = result.link
    send = np.zeros(len(rows))
    for u, row in enumerate(rows):
        if last_use[u] > u:  # crosses every cut in [u, last_use)
            cost = row["wire_bytes"] * link.energy_per_byte_j
            cost += link.energy_per_message_j if row["is_tensor"] else 0.0
            send[u : last_use[u]] += cost
    return device, send


def plot_split(result: Any, path: Path, *, policy: Any = None, samples: int = 64) -> Path:
    """Draw the along-the-network trade-off (and, with ``policy``, energy vs bandwidth)."""
    import matplotlib.pyplot as plt

    panels = 2 if policy is not None else 1
    figure, axes = plt.subplots(panels, 1, figsize=(12, 4.2 * panels), squeeze=False)
    ax = axes[0][0]
    device, send = prefix_tradeoff(result)
    positions = np.arange(len(device))
    ax.plot(positions, device * 1e3, color="tab:green", label="device energy so far")
    ax.plot(positions, send * 1e3, color="tab:orange", label="transmission if cut here")
    ax.plot(positions, (device + send) * 1e3, color="tab:blue", label="total (cut after node)")
    ax.set_yscale("log")
    ax.axhline(result.metrics.total_energy_j * 1e3, color="tab:red", linestyle=":", linewidth=1)
    rows = result.nodes
    on_device = [i for i, row in enumerate(rows) if row["placement"] == "device"]
    last = on_device[-1] if on_device else 0
    ax.scatter([last], [result.metrics.total_energy_j * 1e3], color="tab:red", zorder=5,
               label=f"optimum: {result.metrics.total_energy_j * 1e3:.2f} mJ, {len(result.cut)} tensors")
    ax.set_xlabel("topological position of the cut")
    ax.set_ylabel("energy (mJ)")
    outside = "" if result.link.in_measured_range else ", OUTSIDE the measured range"
    ax.set_title(f"{result.model} on {result.board} over {result.link_name} "
                 f"({result.link.rate_bps / 1e6:.3g} Mbit/s{outside}; input {result.input_wire}, "
                 f"wire {result.wire})")
    ax.legend(fontsize="small")
    if policy is not None:
        _plot_policy(axes[1][0], policy, samples)
    figure.tight_layout()
    return save_figure(figure, path)


def _plot_policy(ax: Any, policy: Any, samples: int) -> None:
    rates = np.geomspace(policy.low_bps, policy.high_bps, max(samples, 2) * 4)
    rates = np.unique(np.r_[rates, [p.low_bps for p in policy.pieces], policy.high_bps])
    unit = 1e3 if policy.objective == "energy" else 1.0
    label = "energy (mJ)" if policy.objective == "energy" else policy.objective
    if policy.objective == "latency":
        unit, label = 1e3, "latency (ms)"
    best = np.array([policy.piece_at(r).objective_at(r) for r in rates])
    for name, style in (("all_local", "--"), ("full_offload", ":")):
        values = np.array([policy.baseline_at(name, r) for r in rates])
        ax.plot(rates, values * unit, linestyle=style, label=name.replace("_", " "))
    ax.plot(rates, best * unit, color="tab:red", linewidth=2, label="optimal split (policy)")
    for piece in policy.pieces[1:]:
        ax.axvline(piece.low_bps, color="gray", linewidth=0.6, alpha=0.6)
    shaded = False
    for piece in policy.out_of_range:
        ax.axvspan(piece.low_bps, piece.high_bps, color="gray", alpha=0.15,
                   label=None if shaded else "outside the measured range (power held at edge)")
        shaded = True
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("uplink rate (bit/s)")
    ax.set_ylabel(label)
    kind = "exact" if policy.exact else "grid + bisection"
    ax.set_title(f"bandwidth policy ({kind}): {len(policy.pieces)} ranges")
    ax.legend(fontsize="small")
