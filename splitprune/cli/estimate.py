"""``splitprune estimate``: per-layer MACs, sizes, energy and latency of a model on a board."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from . import app
from .common import (
    BatchOption,
    BoardOption,
    ClocksOption,
    InputShapeOption,
    JsonOption,
    LaunchOption,
    ModelArgument,
    ModeOption,
    NvpmodelConfOption,
    PrecisionOption,
    annotated_model,
    deployment,
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
    batch: BatchOption = None,
    json_out: JsonOption = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG: per-layer energy and cut sizes")] = None,
    top: Annotated[int, typer.Option(help="Rows in the table (the costliest layers); 0 for all")] = 25,
    mode: ModeOption = "eager",
    precision: PrecisionOption = None,
    power_mode: Annotated[
        str | None, typer.Option(help="nvpmodel power mode (name, alias or number), or 'all' to compare them")
    ] = None,
    deadline_ms: Annotated[
        float | None, typer.Option(help="With --power-mode all: the latency each mode must meet, ms")
    ] = None,
    clocks: ClocksOption = None,
    nvpmodel_conf: NvpmodelConfOption = None,
    launch: LaunchOption = None,
) -> None:
    """Estimate per-layer MACs, energy and latency of MODEL on a Jetson board."""
    if power_mode == "all":
        if clocks is not None or nvpmodel_conf is not None:
            from ..errors import ConfigError

            raise ConfigError("--power-mode all compares the profile's modes; drop --clocks/--nvpmodel-conf")
        base = deployment(board, mode, precision, batch=batch, launch=launch)
        _compare_power_modes(model, base, input_shape, deadline_ms, json_out)
        return
    deployed = deployment(board, mode, precision, power_mode, clocks=clocks, nvpmodel_conf=nvpmodel_conf,
                          batch=batch, launch=launch)
    graph, _ = annotated_model(model, deployed, input_shape)
    if plot is not None:
        from ..plots.estimate import plot_estimate

        plot_estimate(graph, plot)
        status.print(f"plot written to {plot}")
    document = {**graph.to_dict(), **_deployment(deployed, graph)}
    if json_out:
        emit_json(document)
    else:
        _print_table(document, top)


def _deployment(deployed: Any, graph: Any) -> dict[str, Any]:
    """The deployment's fields, and per-batch and per-image figures (the totals are per batch)."""
    images = int(graph.input_shapes[0][0]) if graph.input_shapes and graph.input_shapes[0] else 1
    return {
        "mode": deployed.mode, "precision": deployed.precision, "power_mode": deployed.power_mode,
        "launch": deployed.launch, "deployment": deployed.to_dict(), "batch_size": images,
        "energy_per_image_j": graph.total_energy_j / images, "latency_per_batch_s": graph.total_latency_s,
        "throughput_images_per_s": images / graph.total_latency_s if graph.total_latency_s > 0 else None,
    }  # fmt: skip


def _compare_power_modes(
    model: str,
    base: Any,
    input_shape: str | None,
    deadline_ms: float | None,
    json_out: bool,
) -> None:
    """Latency and energy of MODEL in every power mode of the board, and which mode to pick."""
    from ..deploy import Deployment
    from ..pricing import price

    profile = base.base
    names = list(profile.power_modes) or [profile.board.power_mode]
    graph, _ = annotated_model(model, base, input_shape)
    rows = []
    mode, precision = base.mode, base.precision
    for name in names:
        costs = price(graph, Deployment.of(profile, mode=mode, precision=precision, power_mode=name,
                                           launch=base.launch))
        rows.append(
            {"power_mode": name, "latency_s": costs.total_latency_s, "energy_j": costs.total_energy_j}
        )
    least = min(rows, key=lambda r: r["energy_j"])["power_mode"]
    deadline_s = None if deadline_ms is None else deadline_ms / 1e3
    meeting = [r for r in rows if deadline_s is None or r["latency_s"] <= deadline_s]
    best = min(meeting, key=lambda r: r["energy_j"])["power_mode"] if meeting else None
    document = {
        "schema": "splitprune.power_modes/1", "model": model, "board": profile.board.name, "mode": mode,
        "precision": precision, "launch": base.launch, "input_shape": list(graph.input_shapes[0]),
        "power_modes": rows, "least_energy": least, "deadline_s": deadline_s,
        "least_energy_meeting_deadline": best,
    }  # fmt: skip
    if json_out:
        emit_json(document)
        return
    from rich.table import Table

    title = f"{model} on {profile.board.name} ({mode}, {document['precision']}), every power mode"
    table = Table(title=title)
    for column in ("power mode", "latency ms", "energy mJ"):
        table.add_column(column, justify="left" if column == "power mode" else "right")
    for row in rows:
        table.add_row(row["power_mode"], f"{row['latency_s'] * 1e3:.2f}", f"{row['energy_j'] * 1e3:.1f}")
    people.print(table)
    people.print(f"least energy: {least}")
    if deadline_s is not None:
        people.print(f"least energy meeting {deadline_ms:g} ms: {best or 'none (no mode is fast enough)'}")


def _print_table(doc: dict[str, Any], top: int) -> None:
    from rich.table import Table

    total_j = doc["total_energy_j"]
    layers = [row for row in doc["layers"] if row["energy_j"] > 0]
    shown = sorted(layers, key=lambda r: r["energy_j"], reverse=True)[: top or None]
    shown.sort(key=lambda r: doc["layers"].index(r))
    table = Table(
        title=f"{doc['model']} on {doc['board']}, input {doc['input_shape']}, traced with {doc['tracer']}"
    )
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
        f"{doc['gpu_kernels']} GPU kernels, {total_j * 1e3:.1f} mJ, "
        f"{doc['total_latency_s'] * 1e3:.2f} ms per inference"
    )
    if doc.get("batch_size", 1) > 1:
        people.print(
            f"batch {doc['batch_size']}: {doc['energy_per_image_j'] * 1e3:.2f} mJ per image, "
            f"{doc['throughput_images_per_s']:.1f} images/s"
        )
