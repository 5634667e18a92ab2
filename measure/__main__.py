"""``python -m measure``: run a sweep on the board, or show which power sensor would be used.

Examples::

    python -m measure sweep --sensor auto --grid configs/sweeps/full.toml --out runs/myboard.csv
    python -m measure sweep --sensor nvml --grid configs/sweeps/gpu.toml --batch 16 --mode graph --out b16.csv
    python -m measure sensors
    python -m measure networks --models torchvision:resnet18,torchvision:mobilenet_v2 --mode tensorrt \
        --precision fp16 --batch 1,8 --sensor auto --out runs/networks.csv

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
from typing import Any

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
    _add_networks(commands)
    sensors = commands.add_parser("sensors", help="show the sensor --sensor would use")
    sensors.add_argument("--sensor", choices=SENSOR_NAMES, default="auto")
    sensors.add_argument("--sysfs-root", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    return parser


def _add_networks(commands: Any) -> None:
    net = commands.add_parser(
        "networks",
        help="measure whole networks into a CSV in the shared jetson_published/networks.csv format",
    )
    net.add_argument(
        "--models", required=True, help="comma-separated: torchvision:NAME, pkg.mod:fn, file.py:fn"
    )
    net.add_argument("--mode", choices=("eager", "graph", "tensorrt"), default="eager")
    net.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    net.add_argument("--batch", default="1", help="comma-separated batch sizes, e.g. 1,8")
    net.add_argument("--out", type=Path, required=True, help="CSV to create or resume")
    net.add_argument("--sensor", choices=SENSOR_NAMES, default="auto")
    net.add_argument("--power-mode", help="power mode to record when nvpmodel -q cannot be read")
    net.add_argument("--board", help="board name to record (default: from the device tree)")
    net.add_argument("--input-hw", help="input size: 224 or HxW (default: the model's)")
    net.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when torch sees a GPU")
    net.add_argument("--tensorrt-backend", choices=("auto", "torch-tensorrt", "trtexec"), default="auto")
    net.add_argument("--trtexec", type=Path, help="trtexec binary (default: PATH, then JetPack's)")
    net.add_argument("--windows", type=int, default=5, help="measurement windows per row")
    net.add_argument("--window-s", type=float, default=1.0, help="minimum window length in seconds")
    net.add_argument("--warmup-s", type=float, default=1.0, help="warm-up seconds per row")
    net.add_argument("--idle-s", type=float, default=1.0, help="seconds of settled idle read before a row")
    net.add_argument("--sysfs-root", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    net.add_argument("--probe-s", type=float, default=1.0, help=argparse.SUPPRESS)
    net.add_argument("--gpu-index", type=int, default=0, help="NVML GPU index")
    net.add_argument("--json", action="store_true", help="print the run summary as JSON")


def _input_hw(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        hw = tuple(int(part) for part in parts)
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) < 1:
        raise MeasureError(f"--input-hw {text!r} is not a size; use 224 or 224x320")
    return hw[0], hw[1]


def _networks(args: argparse.Namespace) -> int:
    import torch

    from .grid import Method
    from .networks import NetworkOptions, parse_list, run_networks

    try:
        batches = tuple(int(b) for b in parse_list(args.batch, what="--batch"))
    except ValueError:
        raise MeasureError(f"--batch {args.batch!r} is not a list of integers; use e.g. 1,8") from None
    if args.windows < 1 or args.window_s <= 0 or args.warmup_s < 0 or args.idle_s <= 0:
        raise MeasureError("--windows, --window-s and --idle-s must be positive, --warmup-s >= 0")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    method = Method(
        device=device,
        dtype="fp16" if args.precision == "fp16" else "fp32",
        windows=args.windows,
        window_s=args.window_s,
        warmup_s=args.warmup_s,
        idle_s=args.idle_s,
        probe_s=args.probe_s,
        mode="graph" if args.mode == "graph" else "eager",
    )
    options = NetworkOptions(
        models=tuple(parse_list(args.models, what="--models")),
        batches=batches,
        mode=args.mode,
        precision=args.precision,
        method=method,
        input_hw=_input_hw(args.input_hw),
        power_mode=args.power_mode,
        board=args.board,
        tensorrt_backend=args.tensorrt_backend,
        trtexec=args.trtexec,
    )
    from .networks import check_options

    check_options(options)  # refuse before a sensor is opened
    with make_sensor(args.sensor, sysfs_root=args.sysfs_root, gpu_index=args.gpu_index) as sensor:
        summary = run_networks(options, sensor=sensor, out_path=args.out, report=_status)
    if args.json:
        sys.stdout.write(json.dumps(summary.to_dict(), indent=2) + "\n")
    else:
        sys.stderr.write(
            f"{summary.measured} rows measured, {summary.skipped} already done, "
            f"{summary.failed} not written, in {summary.duration_s:.0f} s -> {summary.out_path}\n"
        )
    return 0


def _status(line: str) -> None:
    sys.stderr.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "networks":
            return _networks(args)
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
