"""The ``run --plot`` timeline: uplink estimate, chosen cut, measured vs predicted latency per request."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import save_figure

__all__ = ["plot_timeline"]


def plot_timeline(records: Sequence[Any], path: Path, *, title: str = "") -> Path:
    """Three panels over the request number; local fallbacks are marked in red."""
    import matplotlib.pyplot as plt

    ids = [r.request_id for r in records]
    fig, (ax_rate, ax_cut, ax_lat) = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    ax_rate.plot(ids, [r.rate_estimate_bps / 1e6 for r in records], label="estimate")
    measured = [(r.request_id, 8 * r.sent_bytes / r.transfer_s / 1e6) for r in records if r.transfer_s > 0]
    if measured:
        ax_rate.scatter(*zip(*measured, strict=True), s=8, color="grey", label="measured transfer")
    ax_rate.set_yscale("log")
    ax_rate.set_ylabel("uplink (Mbit/s)")
    ax_rate.legend(loc="best", fontsize=8)
    kinds = sorted({(r.cut_kind, r.cut) for r in records})
    level = {cut: i for i, (_, cut) in enumerate(kinds)}
    ax_cut.step(ids, [level[r.cut] for r in records], where="mid")
    falls = [(r.request_id, level[r.cut]) for r in records if r.local_fallback]
    if falls:
        ax_cut.scatter(*zip(*falls, strict=True), color="red", s=10, label="local fallback", zorder=3)
        ax_cut.legend(loc="best", fontsize=8)
    ax_cut.set_yticks(range(len(kinds)), [f"{kind} {cut[:6]}" for kind, cut in kinds])
    ax_cut.set_ylabel("cut")
    ax_lat.plot(ids, [r.total_s * 1e3 for r in records], label="measured")
    ax_lat.plot(ids, [r.predicted_latency_s * 1e3 for r in records], label="predicted", linestyle="--")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel("request")
    ax_lat.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
