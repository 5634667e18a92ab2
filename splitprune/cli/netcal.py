"""``calibrate --networks`` and ``validate --networks``: board profiles from whole-network measurements."""

from __future__ import annotations

from pathlib import Path

from ..errors import SplitpruneError
from .common import emit_json, people, status, write_atomic

__all__ = ["calibrate_networks", "validate_networks_cli"]


def _rows(path: Path, board_filter: str | None) -> list:
    from ..calibrate.published import read_networks

    rows = read_networks(path)
    if board_filter is not None:
        rows = [r for r in rows if r.board == board_filter]
        if not rows:
            raise SplitpruneError(f"{path} has no rows for board {board_filter!r}; check --board-filter")
    return rows


def calibrate_networks(
    csv_path: Path | None,
    networks: Path,
    *,
    board: str | None,
    board_filter: str | None,
    name: str | None,
    out: Path,
    metric: str,
    energy_basis: str,
    json_out: bool,
) -> None:
    """Fit (or refine) a profile on whole networks; with a sweep CSV too, the layer fit comes first."""
    from ..board import load_board
    from ..calibrate import calibrate as fit_layers
    from ..calibrate import read_sweep
    from ..calibrate.netfit import fit_networks
    from ..calibrate.netprofile import apply_network_fit
    from ..calibrate.profile import board_toml

    if csv_path is not None:
        base = fit_layers(read_sweep(csv_path), name=name or "calibrated", metric=metric,
                          energy_basis=energy_basis).profile  # fmt: skip
    elif board is not None:
        base = load_board(board)
    else:
        raise SplitpruneError(
            "--networks needs --board BASE (a profile with the board's [device]) or a sweep CSV"
        )
    if name is not None:
        base = base.model_copy(update={"board": base.board.model_copy(update={"name": name})})
    rows = _rows(networks, board_filter)
    fit = fit_networks(base, rows)
    profile = apply_network_fit(base, fit, path=networks)
    header = f"{profile.board.name}: coefficients fitted by `splitprune calibrate --networks {networks.name}`"
    write_atomic(out, board_toml(profile, header=header))
    summary = fit.summary()
    if json_out:
        emit_json({"schema": "splitprune.calibrate_networks/1", "output": str(out), **summary})
        return
    status.print(f"profile written to {out}")
    people.print(
        f"{len(rows)} rows, fitted {', '.join(fit.free)}; leave-one-network-out latency MAPE "
        f"{summary['loo_latency_mape']:.1%}"
        + (
            f", energy MAPE {summary['loo_energy_mape']:.1%}"
            if summary["loo_energy_mape"] is not None
            else ""
        )
    )


def validate_networks_cli(networks: Path, board: str, *, board_filter: str | None, json_out: bool) -> None:
    """Score ``board`` against every row of ``networks``."""
    from rich.table import Table

    from ..board import load_board
    from ..calibrate.netprofile import validate_networks

    profile = load_board(board)
    score = validate_networks(profile, _rows(networks, board_filter)).to_dict()
    if json_out:
        emit_json({"schema": "splitprune.validate_networks/1", "board": profile.board.name, **score})
        return
    table = Table(title=f"{profile.board.name} against {networks.name}")
    for column in ("row", "measured ms", "predicted ms", "error", "measured mJ", "predicted mJ", "error "):
        table.add_column(column, justify="left" if column == "row" else "right")
    for row in score["rows"]:
        if "skipped" in row:
            status.print(f"skipped {row['label']}: {row['skipped']}")
            continue
        energy = (
            ("", "", "")
            if row["energy_error"] is None
            else (
                f"{row['measured_j'] * 1e3:.1f}",
                f"{row['predicted_j'] * 1e3:.1f}",
                f"{row['energy_error']:+.0%}",
            )
        )
        table.add_row(row["label"], f"{row['measured_s'] * 1e3:.2f}", f"{row['predicted_s'] * 1e3:.2f}",
                      f"{row['latency_error']:+.0%}", *energy)  # fmt: skip
    people.print(table)
    energy_mape = score["energy_mape"]
    people.print(f"latency MAPE {score['latency_mape']:.1%}"
                 + ("" if energy_mape is None else f", energy MAPE {energy_mape:.1%}"))  # fmt: skip
