"""``splitprune calibrate`` (fit a board profile to a sweep) and ``splitprune validate`` (check it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import SplitpruneError
from . import app
from .common import JsonOption, ModeOption, emit_json, people, status, write_atomic

if TYPE_CHECKING:
    from ..calibrate import ValidationResult

__all__ = ["calibrate", "validate"]


@app.command()
def calibrate(
    csv_path: Annotated[
        Path | None, typer.Argument(metavar="[CSV]", help="Sweep CSV from python -m measure sweep")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Board name written into the profile")] = None,
    out: Annotated[Path, typer.Option(help="Profile TOML to write (atomically)")] = Path("profile.toml"),
    networks: Annotated[
        Path | None,
        typer.Option(help="Whole-network CSV (python -m measure networks, or published figures) to fit"),
    ] = None,
    board: Annotated[
        str | None, typer.Option(help="With --networks: the profile to refine (its [device] and power modes)")
    ] = None,
    board_filter: Annotated[
        str | None, typer.Option(help="With --networks: use only rows whose board column is this")
    ] = None,
    metric: Annotated[
        str, typer.Option(help="latency, or both / energy (energy needs a power sensor in the sweep)")
    ] = "both",
    energy_basis: Annotated[
        str, typer.Option(help="gross (what the board draws; default) or net (idle-subtracted) energy")
    ] = "gross",
    fit_networks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated networks of the sweep that may inform the network term, or 'none' "
            "(default: every third network by MACs); validate never scores them"
        ),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG: measured vs fitted per kernel mode")] = None,
    json_out: JsonOption = False,
) -> None:
    """Fit a board profile to a layer sweep CSV, to whole-network measurements (--networks), or both."""
    from ..calibrate import calibrate as fit_profile
    from ..calibrate import profile_toml, read_sweep

    if networks is not None:
        from .netcal import calibrate_networks

        calibrate_networks(csv_path, networks, board=board, board_filter=board_filter, name=name, out=out,
                           metric=metric, energy_basis=energy_basis, json_out=json_out)  # fmt: skip
        return
    if csv_path is None or name is None:
        raise SplitpruneError("give a sweep CSV and --name (or --networks FILE --board BASE); see --help")
    data = read_sweep(csv_path)
    names = None if fit_networks is None else [n for n in fit_networks.split(",") if n and n != "none"]
    result = fit_profile(data, name=name, metric=metric, energy_basis=energy_basis, fit_networks=names)
    write_atomic(out, profile_toml(result))
    for table in result.unmeasured:
        status.print(f"warning: {table} was not measured; the profile holds placeholder zeros for it")
    for line in result.warnings:
        status.print(f"warning: {line}")
    if result.fit_networks:
        status.print(f"network term fitted on {', '.join(result.fit_networks)} (validate leaves them out)")
    if plot is not None:
        from ..plots.calibrate import plot_calibration

        plot_calibration(data, result, plot)
        status.print(f"plot written to {plot}")
    if json_out:
        emit_json({"schema": "splitprune.calibrate/2", "output": str(out), **result.to_dict()})
        return
    from rich.table import Table

    grid = Table(title=f"{result.profile.name} -> {out}")
    columns = ("table", "g", "conv /MAC", "FC /MAC", "memory /B", "static", "per op", "static W", "CV MAPE")
    for column in columns:
        grid.add_column(column, justify="left" if column == "table" else "right")
    for key, fit in result.fits.items():
        m = fit.model
        grid.add_row(
            key,
            str(m.conv_kernel_granularity),
            f"{m.conv_per_mac:.3e}",
            f"{m.linear_per_mac:.3e}",
            f"{m.memory_per_byte:.3e}",
            f"{m.static_per_layer:.3e}",
            f"{m.network_per_op:.2e}",
            f"{m.static_power_w:.1f}",
            " ".join(f"{g} {v:.0%}" for g, v in fit.cv_mape.items()),
        )
    people.print(grid)
    floors = result.profile.latency_s.launch_floor
    if floors:
        people.print("launch floors (us): " + ", ".join(f"{k} {v * 1e6:.1f}" for k, v in floors.items()))
    people.print(f"check it on whole networks: splitprune validate {csv_path} --board {out}")


@app.command()
def validate(
    csv_path: Annotated[
        Path | None, typer.Argument(metavar="[CSV]", help="Sweep CSV with [[network]] rows")
    ] = None,
    board: Annotated[str, typer.Option(help="Board profile: a name or a path to a .toml")] = "tx2",
    networks: Annotated[
        Path | None, typer.Option(help="Score against a whole-network CSV instead (measure networks format)")
    ] = None,
    board_filter: Annotated[
        str | None, typer.Option(help="With --networks: use only rows whose board column is this")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="energy, latency or both (default: energy if the sweep measured it)"),
    ] = None,
    mode: ModeOption = "eager",
    plot: Annotated[Path | None, typer.Option(help="Write a PNG: predicted vs measured")] = None,
    json_out: JsonOption = False,
) -> None:
    """Compare a profile's predictions with the held-out networks of a sweep (or a --networks file)."""
    from ..board import load_board
    from ..calibrate import read_sweep
    from ..calibrate import validate as check

    if networks is not None:
        from .netcal import validate_networks_cli

        validate_networks_cli(networks, board, board_filter=board_filter, json_out=json_out)
        return
    if csv_path is None:
        raise SplitpruneError("give a sweep CSV or --networks FILE; see splitprune validate --help")
    data, profile = read_sweep(csv_path), load_board(board)
    measured_on = data.header("device", "")
    if measured_on and measured_on != profile.board.device:
        status.print(
            f"warning: the sweep ran on {measured_on!r} but {profile.name} models {profile.board.device!r}"
        )
    metrics = ["latency", "energy"] if metric == "both" else [metric]
    results = [check(data, profile, metric=m, mode=mode) for m in metrics]
    if plot is not None:
        from ..plots.calibrate import plot_validation

        plot_validation(results[0], plot)
        status.print(f"plot written to {plot}")
    if results[0].fit_networks:
        status.print(f"not scored (the fit trained on them): {', '.join(results[0].fit_networks)}")
    if json_out:
        if len(results) == 1:  # one metric: its figures at the top level
            emit_json({"schema": "splitprune.validate/2", **results[0].to_dict()})
        else:
            emit_json({"schema": "splitprune.validate/2", "results": [r.to_dict() for r in results]})
        return
    for result in results:
        _print_validation(result)


def _print_validation(result: ValidationResult) -> None:
    from rich.table import Table

    scale = 1e3
    unit = "ms" if result.metric == "latency" else "mJ"
    table = Table(title=f"{result.board}: {result.metric} of held-out networks ({result.mode})")
    for column in ("network", "input", f"measured {unit}", f"predicted {unit}", "error"):
        table.add_column(column, justify="left" if column in ("network", "input") else "right")
    for row in result.rows:
        table.add_row(
            row.name,
            "x".join(map(str, row.input_shape)),
            f"{row.measured * scale:.3f}",
            f"{row.predicted * scale:.3f}",
            f"{row.error:+.1%}",
        )
    people.print(table)
    people.print(
        f"{result.metric} MAPE {result.mape:.1%} over {len(result.rows)} networks, "
        f"worst {result.max_abs_error:.1%}"
    )
