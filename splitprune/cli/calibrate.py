"""``splitprune calibrate`` (fit a board profile to a sweep) and ``splitprune validate`` (check it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app
from .common import JsonOption, emit_json, people, status, write_atomic

__all__ = ["calibrate", "validate"]


@app.command()
def calibrate(
    csv_path: Annotated[Path, typer.Argument(metavar="CSV", help="Sweep CSV from python -m measure sweep")],
    name: Annotated[str, typer.Option(help="Board name written into the profile")],
    out: Annotated[Path, typer.Option(help="Profile TOML to write (atomically)")],
    metric: Annotated[
        str, typer.Option(help="energy, latency or both (both needs a power sensor in the sweep)")
    ] = "both",
    energy_basis: Annotated[str, typer.Option(help="net (idle-subtracted) or gross energy")] = "net",
    plot: Annotated[Path | None, typer.Option(help="Write a PNG: measured vs fitted per kernel mode")] = None,
    json_out: JsonOption = False,
) -> None:
    """Fit a board profile (cost per MAC, per byte, per layer) to the layer rows of a sweep CSV."""
    from ..calibrate import calibrate as fit_profile
    from ..calibrate import profile_toml, read_sweep

    data = read_sweep(csv_path)
    result = fit_profile(data, name=name, metric=metric, energy_basis=energy_basis)
    write_atomic(out, profile_toml(result))
    for table in result.unmeasured:
        status.print(f"warning: {table} was not measured; the profile holds placeholder zeros for it")
    if plot is not None:
        from ..plots.calibrate import plot_calibration

        plot_calibration(data, result, plot)
        status.print(f"plot written to {plot}")
    if json_out:
        emit_json({"schema": "splitprune.calibrate/1", "out": str(out), **result.to_dict()})
        return
    from rich.table import Table

    grid = Table(title=f"{result.profile.name} -> {out}")
    for column in ("table", "g", "conv /MAC", "FC /MAC", "memory /B", "static", "CV MAPE", "CV R²"):
        grid.add_column(column, justify="left" if column == "table" else "right")
    for key, fit in result.fits.items():
        c = fit.coefficients
        grid.add_row(
            key,
            str(int(c["conv_kernel_granularity"])),
            f"{c['conv_per_mac']:.3e}",
            f"{c['linear_per_mac']:.3e}",
            f"{c['memory_per_byte']:.3e}",
            f"{c['static_per_layer']:.3e}",
            " ".join(f"{g} {v:.0%}" for g, v in fit.cv_mape.items()),
            f"{fit.cv_r2['all']:.3f}",
        )
    people.print(grid)
    people.print(f"check it on whole networks: splitprune validate {csv_path} --board {out}")


@app.command()
def validate(
    csv_path: Annotated[Path, typer.Argument(metavar="CSV", help="Sweep CSV with [[network]] rows")],
    board: Annotated[str, typer.Option(help="Board profile: a name or a path to a .toml")],
    metric: Annotated[
        str | None, typer.Option(help="energy or latency (default: energy if the sweep measured it)")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG: predicted vs measured")] = None,
    json_out: JsonOption = False,
) -> None:
    """Compare a profile's predictions with the whole networks measured in a sweep."""
    from ..board import load_board
    from ..calibrate import read_sweep
    from ..calibrate import validate as check

    data, profile = read_sweep(csv_path), load_board(board)
    measured_on = data.header("device", "")
    if measured_on and measured_on != profile.board.device:
        status.print(
            f"warning: the sweep ran on {measured_on!r} but {profile.name} models {profile.board.device!r}"
        )
    result = check(data, profile, metric=metric)
    if plot is not None:
        from ..plots.calibrate import plot_validation

        plot_validation(result, plot)
        status.print(f"plot written to {plot}")
    if json_out:
        emit_json(result.to_dict())
        return
    from rich.table import Table

    scale = 1e3
    unit = "ms" if result.metric == "latency" else "mJ"
    table = Table(title=f"{result.board}: {result.metric} of whole networks")
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
    people.print(f"MAPE {result.mape:.1%} over {len(result.rows)} networks")
