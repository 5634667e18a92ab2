"""``splitprune split``: where to cut a model between the Jetson and a server, for a link."""

from __future__ import annotations

import re
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
    annotated_model,
    deployment,
    emit_json,
    people,
    status,
)

__all__ = ["parse_rate_range", "split"]

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def _rate(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+(?:e[+-]?[0-9]+)?)\s*([kmg]?)\s*", text.lower())
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def parse_rate_range(text: str) -> tuple[float, float, int]:
    """Parse ``LOW:HIGH[:N]`` in bit/s (suffixes k, M, G allowed) into ``(low, high, n)``."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError(text)
        low, high = _rate(parts[0]), _rate(parts[1])
        n = int(parts[2]) if len(parts) == 3 else 64
    except ValueError:
        raise SplitpruneError(
            f"bad --sweep-bandwidth {text!r}: use LOW:HIGH[:N] in bit/s, e.g. 1k:10G or 1e5:1e9:50"
        ) from None
    if not (0 < low < high) or n < 2:
        raise SplitpruneError(f"bad --sweep-bandwidth {text!r}: need 0 < LOW < HIGH and N >= 2")
    return low, high, n


@app.command()
def split(
    model: ModelArgument,
    board: BoardOption = "tx2",
    link: Annotated[
        str, typer.Option(help="Link profile: wifi, lte, 5g, 5g-mmwave, ble or a .toml")
    ] = "wifi",
    server: Annotated[
        str | None, typer.Option(help="Server profile (gpu-server or a .toml); default: free server")
    ] = None,
    objective: Annotated[str, typer.Option(help="energy, latency or weighted")] = "energy",
    alpha: Annotated[float, typer.Option(help="Weight of energy in the weighted objective")] = 0.5,
    deadline_ms: Annotated[float | None, typer.Option(help="End-to-end latency limit, ms")] = None,
    energy_budget_mj: Annotated[float | None, typer.Option(help="Device energy limit, mJ")] = None,
    memory_mb: Annotated[float | None, typer.Option(help="Device memory limit (weights + peak), MB")] = None,
    wire: Annotated[
        str | None,
        typer.Option(help="Intermediate tensors: fp32, fp16, int8 or ratio:R (default: the --precision)"),
    ] = None,
    input_wire: Annotated[
        str, typer.Option(help="The model's input: fp32, fp16, uint8, jpeg:QUALITY or a byte count")
    ] = "uint8",
    rate_bps: Annotated[float | None, typer.Option(help="Uplink rate overriding the link's, bit/s")] = None,
    downlink: Annotated[bool, typer.Option(help="Also charge receiving the result")] = False,
    sweep_bandwidth: Annotated[
        str | None, typer.Option(help="LOW:HIGH[:N] bit/s: the optimal split for every rate")
    ] = None,
    input_shape: InputShapeOption = None,
    method: Annotated[str, typer.Option(help="auto, milp, lp or mincut")] = "auto",
    json_out: JsonOption = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the trade-off (and the policy)")] = None,
    export: Annotated[Path | None, typer.Option(help="Write head/tail programs and a manifest here")] = None,
    mode: ModeOption = "eager",
    precision: PrecisionOption = None,
    power_mode: PowerModeOption = None,
    clocks: ClocksOption = None,
    nvpmodel_conf: NvpmodelConfOption = None,
    launch: LaunchOption = None,
    batch: BatchOption = None,
) -> None:
    """Find the device/server split of MODEL that minimises device energy (or latency) over a link."""
    from ..link import load_link, load_server
    from ..split import InputWire, SplitOptions, WireFormat, split_graph, split_policy

    deployed = deployment(board, mode, precision, power_mode, clocks=clocks, nvpmodel_conf=nvpmodel_conf,
                          batch=batch, launch=launch)
    link_profile = load_link(link)
    server_profile = load_server(server) if server is not None else None
    if downlink and link_profile.downlink is None:
        raise SplitpruneError(f"link {link!r} has no [downlink] table; add one or drop --downlink")
    options = SplitOptions(
        objective=objective, alpha=alpha,
        deadline_s=None if deadline_ms is None else deadline_ms / 1e3,
        energy_budget_j=None if energy_budget_mj is None else energy_budget_mj / 1e3,
        memory_bytes=None if memory_mb is None else memory_mb * 1e6,
        downlink=downlink, method=method, cross_check=method == "auto",
    )
    sweep = parse_rate_range(sweep_bandwidth) if sweep_bandwidth is not None else None
    fmt, fmt_in = WireFormat.parse(wire or deployed.precision), InputWire.parse(input_wire)
    if rate_bps is not None and not rate_bps > 0:
        raise SplitpruneError(f"--rate-bps must be positive, got {rate_bps}")
    graph, example = annotated_model(model, deployed, input_shape, runnable=export is not None)
    solved = split_graph(graph, deployed, link_profile, options=options, server=server_profile, wire=fmt,
                         input_wire=fmt_in, rate_bps=rate_bps, name=model)
    result = solved.result
    policy = None
    if sweep is not None:
        policy = split_policy(graph, deployed, link_profile, sweep[0], sweep[1], options=options,
                              samples=sweep[2], server=server_profile, wire=fmt, input_wire=fmt_in)
    _warn_out_of_range(link, link_profile, result.link.rate_bps, policy)
    document: dict[str, Any] = {**result.to_dict(), "deployment": deployed.to_dict()}
    if policy is not None:
        document["policy"] = policy.to_dict()
    if export is not None:
        from ..export import export_split

        wire_bytes = {c.name: c.wire_bytes for c in result.cut}
        export_split(graph.gm, result.device_nodes, (example,), export, model=model,
                     wire_bytes=wire_bytes)
        document["export"] = str(export)
        status.print(f"head, tail and manifest written to {export}")
    if plot is not None:
        from ..plots.split import plot_split

        plot_split(result, plot, policy=policy, samples=sweep[2] if sweep else 64)
        status.print(f"plot written to {plot}")
    if json_out:
        emit_json(document)
    else:
        _print_report(result, policy)


def _mbps(rate_bps: float) -> str:
    return f"{rate_bps / 1e6:.3g} Mbit/s" if rate_bps > 0 else "0"


def _warn_out_of_range(name: str, profile: Any, rate_bps: float, policy: Any) -> None:
    """One warning line when the rate (or part of the sweep) lies outside the measured range."""
    low, high = profile.uplink.measured_rate_bps
    where = []
    if not profile.in_measured_range(rate_bps):
        where.append(_mbps(rate_bps))
    if policy is not None and policy.out_of_range:
        where.append("the policy ranges marked *")
    if where:
        status.print(
            f"warning: {' and '.join(where)} lie outside {_mbps(low)}-{_mbps(high)}, where the {name} "
            f"power model was measured; power is held at the range edge there (cap "
            f"{profile.uplink.cap_w:.3g} W), not extrapolated",
            markup=False, highlight=False,
        )


def _print_report(result: Any, policy: Any) -> None:
    from rich.table import Table

    m = result.metrics
    link = result.link
    marker = "" if link.in_measured_range else " (outside the measured range)"
    people.print(
        f"[bold]{result.model}[/] on {result.board} over {result.link_name} at "
        f"{_mbps(link.rate_bps)}{marker}, radio {link.power_w:.3g} W above idle, input "
        f"{result.input_wire}, wire {result.wire}, objective {result.objective}"
    )
    if result.cut:
        table = Table(title=f"tensors sent ({len(result.cut)})")
        for column in ("tensor", "kind", "shape", "native KB", "wire KB", "server consumers"):
            table.add_column(column, justify="right" if "KB" in column else "left")
        for c in result.cut:
            table.add_row(c.name, c.kind, " ".join("x".join(map(str, s)) for s in c.output_shapes),
                          f"{c.out_bytes / 1024:,.1f}", f"{c.wire_bytes / 1024:,.1f}",
                          ", ".join(c.consumers))
        people.print(table)
        people.print(f"device runs {len(result.device_nodes)} of {len(result.nodes)} nodes")
    else:
        people.print("all local: nothing is sent")
    people.print(
        f"energy: device {m.device_energy_j * 1e3:.3f} mJ + transmission "
        f"{m.transmission_energy_j * 1e3:.3f} mJ = {m.total_energy_j * 1e3:.3f} mJ"
    )
    people.print(
        f"latency: device {m.device_latency_s * 1e3:.3f} ms + transfer "
        f"{m.transfer_latency_s * 1e3:.3f} ms + server {m.server_latency_s * 1e3:.3f} ms = "
        f"{m.latency_s * 1e3:.3f} ms; {m.sent_bytes / 1024:,.1f} KB sent; "
        f"device memory {m.memory_bytes / 1e6:.2f} MB"
    )
    for label, base in (("all-local", result.all_local), ("full offload", result.full_offload)):
        s = result.savings(base)
        people.print(
            f"vs {label} ({base.total_energy_j * 1e3:.3f} mJ, {base.latency_s * 1e3:.3f} ms): "
            f"saves {s['energy_j'] * 1e3:.3f} mJ ({100 * s['energy_fraction']:.1f} %), "
            f"{s['latency_s'] * 1e3:.3f} ms ({100 * s['latency_fraction']:.1f} %)"
        )
    people.print(f"solver {result.solver} ({result.status}) in {result.solve_time_s * 1e3:.1f} ms")
    if policy is not None:
        unit, scale = (" (mJ)", 1e3) if policy.objective == "energy" else (" (ms)", 1e3)
        if policy.objective == "weighted":
            unit, scale = "", 1.0
        table = Table(title=f"bandwidth policy ({'exact' if policy.exact else 'grid + bisection'}); "
                            "* = outside the link's measured range")
        for column in ("from Mbit/s", "to Mbit/s", "split", "tensors sent", "KB sent", "device mJ",
                       f"{policy.objective} at ends{unit}"):
            table.add_column(column, justify="left" if column in ("split", "tensors sent") else "right")
        nodes = len(result.nodes)
        for p in policy.pieces:
            star = "" if p.in_measured_range else "*"
            table.add_row(
                f"{p.low_bps / 1e6:.4g}{star}", f"{p.high_bps / 1e6:.4g}{star}", _split_kind(p, nodes),
                (", ".join(p.cut) or "-") if p.feasible else "(infeasible)",
                f"{p.sent_bytes / 1024:,.1f}", f"{p.device_energy_j * 1e3:.3f}",
                f"{p.objective_at(p.low_bps) * scale:.4g} - {p.objective_at(p.high_bps) * scale:.4g}"
                if p.feasible else "",
            )
        people.print(table)


def _split_kind(piece: Any, nodes: int) -> str:
    """``all local``, ``full offload`` or ``split (k/n on device)`` for a policy piece."""
    if piece.split_kind == "split":
        return f"split ({len(piece.device_nodes)}/{nodes} on device)"
    return piece.split_kind.replace("_", " ")
