"""``splitprune estimate``: per-layer MACs, sizes, energy and latency of a model on a board."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from . import app
from .common import (
    BoardOption,
    InputShapeOption,
    JsonOption,
    ModelArgument,
    ModeOption,
    annotated_model,
    emit_json,
    people,
    status,
)

__all__ = ["estimate"]


@app.command()
def estimate(
    model: ModelArgument,
    board: BoardOption = "tx2",
    input_shape: InputShapeOption = None,
    batch: Annotated[int | None, typer.Option(help="Batch size (replaces the first dimension)")] = None,
    json_out: JsonOption = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG: per-layer energy and cut sizes")] = None,
    top: Annotated[int, typer.Option(help="Rows in the table (the costliest layers); 0 for all")] = 25,
    mode: ModeOption = "eager",
) -> None:
    """Estimate per-layer MACs, energy and latency of MODEL on a Jetson board."""
    from ..board import load_board

    graph, _ = annotated_model(model, load_board(board).for_mode(mode), input_shape, batch=batch)
    if plot is not None:
        from ..plots.estimate import plot_estimate

        plot_estimate(graph, plot)
        status.print(f"plot written to {plot}")
    if json_out:
        emit_json(graph.to_dict())
    else:
        _print_table(graph.to_dict(), top)


def _print_table(doc: dict[str, Any], top: int) -> None:
    from rich.table import Table

    total_j = doc["total_energy_j"]
    layers = [row for row in doc["layers"] if row["energy_j"] > 0]
    shown = sorted(layers, key=lambda r: r["energy_j"], reverse=True)[: top or None]
    shown.sort(key=lambda r: doc["layers"].index(r))
    table = Table(title=f"{doc['model']} on {doc['board']}, input {doc['input_shape']}")
    for column in ("layer", "kind", "MMAC", "output KB", "energy mJ", "latency ms", "share %"):
        table.add_column(column, justify="left" if column in ("layer", "kind") else "right")
    for row in shown:
        table.add_row(
            row["name"],
            row["kind"],
            f"{row['macs'] / 1e6:,.1f}",
            f"{row['out_bytes'] / 1024:,.1f}",
            f"{row['energy_j'] * 1e3:.3f}",
            f"{row['latency_s'] * 1e3:.3f}",
            f"{100 * row['energy_j'] / total_j:.1f}",
        )
    people.print(table)
    if top and len(layers) > len(shown):
        people.print(f"({len(layers) - len(shown)} cheaper layers not shown; --top 0 shows all)")
    people.print(
        f"total: {doc['total_macs'] / 1e9:.3f} GMAC, {doc['total_params'] / 1e6:.2f} M params, "
        f"{total_j * 1e3:.1f} mJ, {doc['total_latency_s'] * 1e3:.2f} ms per inference"
    )
