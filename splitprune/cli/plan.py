"""``splitprune plan``: where to cut a model and how much to prune its device side, together."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import SplitpruneError
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
    people,
    status,
)
from .split import parse_rate_range

__all__ = ["plan"]

SWEEP_PLANS = 8


@app.command()
def plan(
    model: ModelArgument,
    board: BoardOption = "tx2",
    mode: ModeOption = "eager",
    precision: PrecisionOption = None,
    power_mode: PowerModeOption = None,
    clocks: ClocksOption = None,
    nvpmodel_conf: NvpmodelConfOption = None,
    launch: LaunchOption = None,
    batch: BatchOption = None,
    link: Annotated[str, typer.Option(help="Link profile: wifi, lte, 5g, ble or a .toml")] = "wifi",
    server: Annotated[
        str | None, typer.Option(help="Server profile (gpu-server or a .toml); default: free server")
    ] = None,
    objective: Annotated[str, typer.Option(help="energy (device compute + radio) or latency")] = "energy",
    energy_budget_mj: Annotated[
        float | None, typer.Option(help="Device energy budget per inference, mJ")
    ] = None,
    deadline_ms: Annotated[float | None, typer.Option(help="End-to-end latency limit, ms")] = None,
    max_prune: Annotated[
        float, typer.Option(help="Largest fraction of the model's channel saliency a plan may remove")
    ] = 0.5,
    rate_bps: Annotated[float | None, typer.Option(help="Uplink rate overriding the link's, bit/s")] = None,
    sweep_bandwidth: Annotated[
        str | None, typer.Option(help=f"LOW:HIGH[:N] bit/s: a plan for N rates (default {SWEEP_PLANS})")
    ] = None,
    wire: Annotated[
        str | None,
        typer.Option(help="Intermediate tensors: fp32, fp16, int8 or ratio:R (default: the --precision)"),
    ] = None,
    input_wire: Annotated[
        str, typer.Option(help="The model's input: fp32, fp16, uint8, jpeg:QUALITY or a byte count")
    ] = "uint8",
    step: Annotated[float, typer.Option(help="Saliency removed per pruning step (search resolution)")] = 0.02,
    candidates: Annotated[int, typer.Option(help="Most candidate cuts to prune")] = 6,
    round_to: Annotated[
        int | None, typer.Option(help="Channels per pruning chunk (default: the board's kernel tile)")
    ] = None,
    full_front: Annotated[
        bool, typer.Option(help="Prune every candidate to --max-prune for a fuller Pareto front")
    ] = False,
    input_shape: InputShapeOption = None,
    seed: Annotated[int, typer.Option(help="Seed for the weights (torchvision models are untrained)")] = 0,
    json_out: JsonOption = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the Pareto front")] = None,
    export: Annotated[
        Path | None, typer.Option(help="Write the pruned head/tail programs and a manifest here")
    ] = None,
) -> None:
    """Plan MODEL's cut and device-side pruning to meet an energy budget or deadline at least cost."""
    import torch

    from ..link import load_link, load_server
    from ..models import load_model
    from ..plan import PlanOptions
    from ..plan import plan as make_plan
    from .common import parse_input_shape

    if energy_budget_mj is None and deadline_ms is None:
        raise SplitpruneError("give a budget: --energy-budget-mj E or --deadline-ms D")
    if rate_bps is not None and sweep_bandwidth is not None:
        raise SplitpruneError("give --rate-bps or --sweep-bandwidth, not both")
    if rate_bps is not None and not rate_bps > 0:
        raise SplitpruneError(f"--rate-bps must be positive, got {rate_bps}")
    rates: list[float] | None = None if rate_bps is None else [rate_bps]
    if sweep_bandwidth is not None:
        low, high, n = parse_rate_range(sweep_bandwidth)
        n = n if sweep_bandwidth.count(":") == 2 else SWEEP_PLANS
        import numpy as np

        rates = [float(r) for r in np.geomspace(low, high, n)]
        if export is not None:
            raise SplitpruneError("--export writes one plan: give --rate-bps instead of --sweep-bandwidth")
    deployed = deployment(board, mode, precision, power_mode, clocks=clocks, nvpmodel_conf=nvpmodel_conf,
                          batch=batch, launch=launch)
    link_profile = load_link(link)
    options = PlanOptions(
        objective=objective,
        energy_budget_j=None if energy_budget_mj is None else energy_budget_mj / 1e3,
        deadline_s=None if deadline_ms is None else deadline_ms / 1e3,
        max_prune=max_prune, step_saliency=step, max_candidates=candidates, round_to=round_to,
        wire=wire or deployed.precision,
        input_wire=input_wire,
        full_front=full_front,
    )
    server_profile = load_server(server) if server is not None else None
    parse_input_shape(input_shape, default=(1,))  # a typo fails before the model loads
    torch.manual_seed(seed)
    loaded = load_model(model, device="cpu")
    module = loaded.module.eval()
    example = torch.randn(parse_input_shape(input_shape, default=loaded.input_shape, batch=deployed.batch))
    sweep = make_plan(module, example, deployed, link_profile, rates_bps=rates, server=server_profile,
                      options=options, name=model)
    document: dict[str, Any] = sweep.to_dict()
    if export is not None:
        from ..plan.export import export_plan

        export_plan(module, (example,), sweep, export)
        document["export"] = str(export)
        status.print(f"pruned head, tail and manifest written to {export}")
    if plot is not None:
        from ..plots.plan import plot_plan

        plot_plan(sweep, plot)
        status.print(f"plot written to {plot}")
    for message in sweep.errors:
        status.print(f"warning: {message}")
    if json_out:
        emit_json(document)
    else:
        _print_report(sweep)


def _print_report(sweep: Any) -> None:
    from rich.table import Table

    unit = "mJ" if sweep.objective == "energy" else "ms"
    budgets = ", ".join(
        f"{'energy' if k == 'energy_budget_j' else 'deadline'} {v * 1e3:.4g} "
        f"{'mJ' if k == 'energy_budget_j' else 'ms'}" for k, v in sweep.constraints.items()
    )
    people.print(
        f"[bold]{sweep.model}[/] on {sweep.board} over {sweep.link_name}, wire {sweep.wire}, objective "
        f"{sweep.objective}, budget {budgets}, max prune {sweep.max_prune:.3g}: {sweep.states} pruned "
        f"models over {len(sweep.candidates)} candidate cuts in {sweep.elapsed_s:.1f} s"
    )
    table = Table(
        title="plans (energy = device compute + radio; saliency = fraction removed; found on = the "
        "candidate cut whose device side was pruned, and the step)"
    )
    for column in ("Mbit/s", "plan", "energy mJ", "latency ms", "KB sent", "prune-only", "split-only",
                   "found on"):
        table.add_column(column, justify="left" if column in ("plan", "found on") else "right",
                         no_wrap=column == "plan")

    def brief(p: Any) -> str:
        if p is None:
            return "(misses budget)"
        value = p.energy_j if sweep.objective == "energy" else p.latency_s
        return f"{p.saliency_removed:.3f} / {value * 1e3:.4g} {unit}"

    for r in sweep.plans:
        b = r.best
        table.add_row(
            f"{r.link.rate_bps / 1e6:.4g}", r.label,
            f"{b.energy_j * 1e3:.4g}", f"{b.latency_s * 1e3:.4g}", f"{b.metrics.sent_bytes / 1024:,.1f}",
            brief(r.prune_only), brief(r.split_only), r.trajectory,
        )
    people.print(table)
    first = sweep.plans[0]
    if first.cut:
        people.print(f"tensors sent: {', '.join(c['name'] for c in first.cut)}")
    if first.pruned_layers:
        layers = ", ".join(f"{m} {a}->{b}" for m, (a, b) in list(first.pruned_layers.items())[:12])
        more = len(first.pruned_layers) - 12
        extra = f" (+{more} more)" if more > 0 else ""
        people.print(f"pruned ({len(first.pruned_layers)} layers): {layers}{extra}")
    m = first.best.metrics
    people.print(
        f"energy: device {m.device_energy_j * 1e3:.3f} mJ + radio {m.transmission_energy_j * 1e3:.3f} mJ "
        f"(server {m.server_energy_j * 1e3:.3f} mJ, not charged); latency: device "
        f"{m.device_latency_s * 1e3:.3f} ms + transfer {m.transfer_latency_s * 1e3:.3f} ms + server "
        f"{m.server_latency_s * 1e3:.3f} ms"
    )
