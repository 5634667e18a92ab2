"""``python -m measure``: run a sweep on the board, or show which power sensor would be used.

Examples::

    python -m measure sweep --sensor auto --grid configs/sweeps/full.toml --out runs/myboard.csv
    python -m measure sweep --sensor nvml --grid configs/sweeps/gpu.toml --batch 16 --mode graph --out b16.csv
    python -m measure sensors

A user mistake (bad grid, missing sensor, CSV from another run, graph mode on a CPU) prints one line and
exits with 2. The sweep modules (and torch) are imported inside :func:`main`, so that the power-sampling
process, which re-imports this module, starts light.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .errors import MeasureError
from .sensors import SENSOR_NAMES, make_sensor

_MODES = ("eager", "graph")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m measure", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="measure every grid point missing from --out")
    sweep.add_argument("--grid", type=Path, required=True, help="sweep grid TOML")
    sweep.add_argument("--out", type=Path, required=True, help="CSV to create or resume")
    sweep.add_argument("--sensor", choices=SENSOR_NAMES, default="auto")
    sweep.add_argument("--device", choices=("cpu", "cuda"), help="override method.device")
    sweep.add_argument("--mode", choices=_MODES, help="override method.mode (graph: CUDA-graph replay)")
    sweep.add_argument("--batch", type=int, help="override method.batch and the network rows' batch")
    sweep.add_argument("--sysfs-root", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    sweep.add_argument("--gpu-index", type=int, default=0, help="NVML GPU index")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument("--json", action="store_true", help="print the run summary as JSON")
    sensors = commands.add_parser("sensors", help="show the sensor --sensor would use")
    sensors.add_argument("--sensor", choices=SENSOR_NAMES, default="auto")
    sensors.add_argument("--sysfs-root", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    return parser


def _status(line: str) -> None:
    sys.stderr.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "sensors":
            with make_sensor(args.sensor, sysfs_root=args.sysfs_root) as sensor:
                sys.stdout.write(json.dumps(sensor.describe(), indent=2) + "\n")
            return 0
        from .grid import load_grid
        from .sweep import check_method, run_sweep

        grid = load_grid(args.grid)
        if args.batch is not None:
            if args.batch < 1:
                raise MeasureError(f"--batch must be a positive integer, got {args.batch}")
            grid = grid.with_batch(args.batch)
        method = grid.method
        if args.device:
            method = dataclasses.replace(method, device=args.device)
        if args.mode:
            method = dataclasses.replace(method, mode=args.mode)
        check_method(method)
        with make_sensor(args.sensor, sysfs_root=args.sysfs_root, gpu_index=args.gpu_index) as sensor:
            sys.stderr.write(
                f"sensor: {sensor.name}; device: {method.device}; mode: {method.mode}; "
                f"batch: {method.batch}; out: {args.out}\n"
            )
            summary = run_sweep(
                grid,
                sensor=sensor,
                out_path=args.out,
                progress=not args.no_progress,
                method=method,
                report=_status,
            )
    except MeasureError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted; finished points are in {args.out}, rerun to resume\n")
        return 130
    if args.json:
        sys.stdout.write(json.dumps(summary.to_dict(), indent=2) + "\n")
    else:
        sys.stderr.write(
            f"{summary.measured} points measured ({summary.flagged} flagged), "
            f"{summary.skipped} already done, in {summary.duration_s:.0f} s -> {summary.out_path}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
