"""``splitprune prune``: structured pruning of a model to an energy or latency budget on a board."""

from __future__ import annotations

import json
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
    PowerModeOption,
    PrecisionOption,
    deployment,
    emit_json,
    parse_input_shape,
    people,
    status,
)

__all__ = ["prune"]


@app.command()
def prune(
    model: ModelArgument,
    board: BoardOption = "tx2",
    mode: ModeOption = "eager",
    precision: PrecisionOption = None,
    power_mode: PowerModeOption = None,
    clocks: ClocksOption = None,
    nvpmodel_conf: NvpmodelConfOption = None,
    launch: LaunchOption = None,
    batch: BatchOption = None,
    budget: Annotated[
        str, typer.Option(help="Fraction of baseline (0.5, 50%), joules (0.08J, 80mJ) or latency (12ms)")
    ] = "0.5",
    metric: Annotated[
        str, typer.Option(help="What a relative budget constrains: energy or latency")
    ] = "energy",
    importance: Annotated[
        str, typer.Option(help="energy (saliency per joule), magnitude, taylor or random")
    ] = "energy",
    round_to: Annotated[
        int | None, typer.Option(help="Keep widths at multiples of N (default: the board's kernel tile)")
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option(help="Module whose output channels stay (repeatable)")
    ] = None,
    min_channels: Annotated[int, typer.Option(help="Fewest output channels a layer keeps")] = 4,
    max_ratio: Annotated[float, typer.Option(help="Largest fraction of a layer's channels removed")] = 0.9,
    keep_embedding: Annotated[
        bool, typer.Option(help="Transformers: leave the attention (embedding) width, prune MLP/conv only")
    ] = False,
    input_shape: InputShapeOption = None,
    seed: Annotated[int, typer.Option(help="Seed for weights init and random importance")] = 0,
    output: Annotated[
        Path | None, typer.Option(help="Save the pruned model here (.pt) and its report as .json")
    ] = None,
    json_out: JsonOption = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG: layer energy before/after, steps")] = None,
) -> None:
    """Prune MODEL until its estimated energy (or latency) on BOARD meets BUDGET."""
    import torch

    from ..files import write_atomic
    from ..models import load_model
    from ..prune import Budget, BudgetError, PruneOptions, prune_to_budget
    from ..prune.io import save_pruned

    if metric not in ("energy", "latency"):
        raise BudgetError(f"--metric must be energy or latency, got {metric!r}")
    spec = Budget.parse(budget)
    if spec.relative and metric == "latency":
        spec = Budget(spec.value, metric="latency_s")
    deployed = deployment(board, mode, precision, power_mode, clocks=clocks, nvpmodel_conf=nvpmodel_conf,
                          batch=batch, launch=launch)
    profile = deployed.profile
    options = PruneOptions(
        round_to=round_to,
        ignore=tuple(ignore or ()),
        min_channels=min_channels,
        max_ratio=max_ratio,
        seed=seed,
        prune_embedding=not keep_embedding,
    )
    torch.manual_seed(seed)
    loaded = load_model(model, device="cpu")
    shape = parse_input_shape(input_shape, default=loaded.input_shape, batch=deployed.batch)
    inputs = torch.randn(shape)
    if not json_out:
        status.print(f"pruning {model} to {spec.describe()} on {profile.name} ...")
    result = prune_to_budget(
        loaded.module, inputs, deployed, spec, importance=importance, options=options, name=model
    )
    document = result.to_dict(output=str(output) if output else None)
    document["input_shape"] = list(shape)
    if output is not None:
        save_pruned(output, result.model, result.pruning_history, [shape], model_spec=model)
        write_atomic(output.with_suffix(".json"), json.dumps(document, indent=2) + "\n")
        if not json_out:
            status.print(f"pruned model written to {output} (report: {output.with_suffix('.json')})")
    if plot is not None:
        from ..plots.prune import plot_prune

        plot_prune(result, plot)
        if not json_out:
            status.print(f"plot written to {plot}")
    if json_out:
        emit_json(document)
    else:
        _print_report(document)


def _print_report(doc: dict[str, Any]) -> None:
    from rich.table import Table

    rows = [r for r in doc["layers"] if r["kind"] in ("conv", "linear", "matmul", "attention")]
    table = Table(title=f"{doc['model']} on {doc['board']}, {doc['importance']} importance")
    for column in ("layer", "kind", "channels", "energy mJ before", "after", "idle-slot mJ after"):
        table.add_column(column, justify="left" if column in ("layer", "kind") else "right")
    for row in rows:
        changed = row["channels_after"] != row["channels_before"]
        table.add_row(
            row["module"] or row["name"],
            row["kind"],
            f"{row['channels_before']} -> {row['channels_after']}"
            if changed
            else str(row["channels_before"]),
            f"{row['energy_before_j'] * 1e3:.3f}",
            f"{row['energy_after_j'] * 1e3:.3f}",
            f"{row['padding_after_j'] * 1e3:.3f}" if row["padding_after_j"] else "",
        )
    people.print(table)
    other_before = sum(r["energy_before_j"] for r in doc["layers"] if r not in rows)
    other_after = sum(r["energy_after_j"] for r in doc["layers"] if r not in rows)
    people.print(
        "other layers (norm, activation, pooling, add, permute): "
        f"{other_before * 1e3:.2f} -> {other_after * 1e3:.2f} mJ"
    )
    unit, scale = ("mJ", 1e3) if doc["metric"] == "energy" else ("ms", 1e3)
    budget = doc["budget_j"] if doc["metric"] == "energy" else doc["budget_s"]
    after = doc["energy_after_j"] if doc["metric"] == "energy" else doc["latency_after_s"]
    people.print(
        f"energy {doc['energy_before_j'] * 1e3:.2f} -> {doc['energy_after_j'] * 1e3:.2f} mJ, latency "
        f"{doc['latency_before_s'] * 1e3:.2f} -> {doc['latency_after_s'] * 1e3:.2f} ms, MACs "
        f"{doc['macs_before'] / 1e9:.3f} -> {doc['macs_after'] / 1e9:.3f} G, params "
        f"{doc['params_before'] / 1e6:.2f} -> {doc['params_after'] / 1e6:.2f} M"
    )
    people.print(
        f"budget {budget * scale:.2f} {unit}: estimate {after * scale:.2f} {unit} "
        f"({100 * doc['budget_error']:+.2f} %, {'within' if doc['within_tolerance'] else 'OUTSIDE'} "
        f"tolerance) after {doc['steps']} steps in {doc['elapsed_s']:.1f} s"
    )
    people.print(
        f"idle kernel slots (widths off the {doc['kernel_granularity']}-kernel tile): "
        f"{doc['padding_before_j'] * 1e3:.3f} -> {doc['padding_after_j'] * 1e3:.3f} mJ "
        f"with round_to={doc['round_to']}"
    )
    for note in doc["notes"]:
        people.print(f"note: {note}")
