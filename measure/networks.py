"""Whole-network measurements (``python -m measure networks``) in the published-networks CSV format.

Each row is one network at one batch size, run one way (:data:`RUNTIMES`), in one precision. The
method is the sweep's (:mod:`measure.sweep`): the sensor's update period is measured once and the
windows planned from it; per row the network is built with random weights on the device in its
precision (``model.half()`` and half inputs for fp16), warmed up, captured as a CUDA graph in graph mode
(:mod:`measure.modes`) or compiled by torch-tensorrt; settled idle is read; then ``--windows`` windows
of back-to-back batches give the latency per batch (host side: synchronised wall time over the batches
run) and the mean power of the sensor's main rail over each window's steady span. On CUDA the GPU
time per batch is timed again with CUDA events around each batch. With ``trtexec`` the engine is built
from an ONNX export and timed by trtexec itself while the sensor samples (:mod:`measure.tensorrt`).

Energy per image is gross, as in the published file: ``power_w x latency_ms / batch`` (idle included);
``idle_power_w`` is there to take it out. Rows are appended atomically and skipped when already in the
CSV (:mod:`measure.network_csv`); a row whose reading stays bad after the retries is not written (a
warning says why) and is tried again on the next run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from . import tensorrt as trt
from .errors import SweepError
from .grid import Method
from .models import Network, load_network
from .modes import make_runner
from .network_csv import NetworkCsv, row_key
from .record import collect_environment
from .sensors import PowerSensor
from .sweep import measure_run, sweep_sensor_facts
from .window import WindowPlan

__all__ = [
    "MODES",
    "PRECISIONS",
    "RUNTIMES",
    "NetworkOptions",
    "NetworksSummary",
    "board_name",
    "run_networks",
]

MODES = ("eager", "graph", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
RUNTIMES = {"eager": "pytorch-eager", "graph": "pytorch-graph", "tensorrt": "tensorrt"}
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
# Device-tree model names -> the board names of shared/data/jetson_published (first match wins).
_JETSON_BOARDS = (
    ("AGX Orin", "jetson-agx-orin"),
    ("Orin NX", "jetson-orin-nx"),
    ("Orin Nano", "jetson-orin-nano"),
    ("AGX Xavier", "jetson-agx-xavier"),
    ("Jetson-AGX", "jetson-agx-xavier"),
    ("Xavier NX", "jetson-xavier-nx"),
    ("TX2", "jetson-tx2"),
    ("Nano", "jetson-nano"),
)
_SENSOR_KINDS = {"ina3221": "INA3221 sysfs", "jtop": "jetson-stats", "nvml": "NVML"}
_GPU_TIMING_S = 1.0
_GPU_TIMING_MAX_RUNS = 1000


@dataclass(frozen=True)
class NetworkOptions:
    """What ``python -m measure networks`` measures.

    Attributes:
        models: Model specs (``torchvision:NAME``, ``pkg.mod:fn``, ``file.py:fn``).
        batches: Batch sizes.
        mode: ``eager``, ``graph`` (CUDA graph replay) or ``tensorrt``.
        precision: ``fp32``, ``fp16`` or ``int8`` (TensorRT only).
        method: Device, windows, warm-up, idle and retry settings (the sweep's :class:`Method`).
        input_hw: Input height and width in pixels (None: each model's default).
        power_mode: ``--power-mode`` (used when ``nvpmodel -q`` cannot be read).
        board: Board name for the CSV (None: from the device tree, else the device's name).
        tensorrt_backend: ``auto``, ``torch-tensorrt`` or ``trtexec``.
        trtexec: Path of trtexec (None: ``PATH``, then JetPack's copy).
    """

    models: tuple[str, ...]
    batches: tuple[int, ...]
    mode: str = "eager"
    precision: str = "fp32"
    method: Method = dataclasses.field(default_factory=Method)
    input_hw: tuple[int, int] | None = None
    power_mode: str | None = None
    board: str | None = None
    tensorrt_backend: str = "auto"
    trtexec: Path | None = None


@dataclass(frozen=True)
class NetworksSummary:
    """What a call to :func:`run_networks` did.

    Attributes:
        out_path: The CSV.
        measured: Rows written now.
        skipped: Rows already in the CSV.
        failed: Rows not written (bad reading, graph capture or TensorRT failure; see the warnings).
        runtime: The CSV's ``runtime`` value.
        backend: TensorRT backend used (empty outside tensorrt mode).
        power_mode: The CSV's ``power_mode`` value.
        duration_s: Wall time in seconds.
    """

    out_path: Path
    measured: int
    skipped: int
    failed: int
    runtime: str
    backend: str
    power_mode: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {**asdict(self), "out_path": str(self.out_path)}


def board_name(model: str) -> str:
    """The published file's board name for a device-tree model string, else the string itself."""
    for fragment, board in _JETSON_BOARDS:
        if fragment.lower() in model.lower():
            return board
    return model


def resolve_power_mode(nvpmodel: str, given: str | None, warn: Callable[[str], None]) -> str:
    """``nvpmodel -q``'s mode when readable, else ``--power-mode``, else ``not stated``."""
    if nvpmodel and nvpmodel != "not readable":
        if given and given.lower() != nvpmodel.lower():
            warn(
                f"warning: nvpmodel -q says power mode {nvpmodel!r}; "
                f"recording that, not --power-mode {given!r}"
            )
        return nvpmodel
    return given or "not stated"


def check_options(options: NetworkOptions) -> str:
    """Refuse what this machine cannot run; return the TensorRT backend (empty outside tensorrt mode).

    Raises:
        SweepError: int8 outside TensorRT, fp16 on the CPU, CUDA graphs or torch-tensorrt without a GPU,
            no TensorRT, or a bad batch size.
    """
    if options.mode not in MODES:
        raise SweepError(f"unknown mode {options.mode!r}; use one of {', '.join(MODES)}")
    if options.precision not in PRECISIONS:
        raise SweepError(f"unknown precision {options.precision!r}; use one of {', '.join(PRECISIONS)}")
    if not options.models or not options.batches or min(options.batches) < 1:
        raise SweepError(
            "--models and --batch need at least one model and positive batch sizes; e.g. --batch 1,8"
        )
    if options.precision == "int8" and options.mode != "tensorrt":
        raise SweepError("int8 is measured through TensorRT only; use --mode tensorrt or --precision fp16")
    device = options.method.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SweepError("--device cuda but torch sees no GPU; use --device cpu")
    backend = ""
    if options.mode == "tensorrt":
        trtexec = trt.find_trtexec(options.trtexec)
        backend = trt.pick_backend(options.tensorrt_backend, precision=options.precision, trtexec=trtexec)
        if backend == "trtexec":
            return backend  # trtexec runs the GPU itself: torch may be a CPU-only build
    if options.mode != "eager" and device != "cuda":
        what = "CUDA graphs" if options.mode == "graph" else "torch-tensorrt"
        raise SweepError(
            f"--mode {options.mode} needs {what} on a GPU, not available on {device}; use --mode eager"
        )
    if options.precision == "fp16" and device != "cuda":
        raise SweepError("fp16 is measured on cuda only; use --precision fp32 on the cpu")
    return backend


def _power_scope(sensor: PowerSensor) -> str:
    info = sensor.describe()
    if not sensor.measures_energy:
        return ""
    kind = _SENSOR_KINDS.get(sensor.name, sensor.name)
    how = (
        "energy counter" if sensor.has_counter else f"sampled every {sensor.interval_s * 1e3:g} ms, trapezoid"
    )
    return f"{info.get('sensor_main_rail', '')} ({kind}; {how}; mean over the timed runs)"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _gpu_time_ms(run: Callable[[], Any], per_run: int) -> float:
    """Mean GPU time per inference: CUDA events around each call, for about a second."""
    pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    torch.cuda.synchronize()
    deadline_s = time.perf_counter() + _GPU_TIMING_S
    while len(pairs) < 3 or (time.perf_counter() < deadline_s and len(pairs) < _GPU_TIMING_MAX_RUNS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    return math.fsum(start.elapsed_time(end) for start, end in pairs) / len(pairs) / per_run


def _torch_row(
    network: Network,
    batch: int,
    hw: tuple[int, int],
    options: NetworkOptions,
    sensor: PowerSensor,
    plan: WindowPlan,
) -> dict[str, Any]:
    """Latency, GPU time and power of a PyTorch (or torch-tensorrt) module: the sweep's windows."""
    method = options.method
    dtype = _DTYPES["fp16" if options.precision == "fp16" else "fp32"]
    torch.manual_seed(method.seed)
    module = network.module.to(device=method.device, dtype=dtype).eval()
    inputs = torch.randn(batch, 3, *hw, device=method.device, dtype=dtype)
    note = ""
    if options.mode == "tensorrt":  # compiled outside inference mode, as torch-tensorrt expects
        with torch.no_grad():
            module = trt.compile_torch_tensorrt(module, inputs, precision=options.precision)
        note = "torch-tensorrt compile"
    with torch.inference_mode():
        try:
            module(inputs)
        except Exception as exc:  # the model does not run on this input (too small, wrong channels ...)
            raise SweepError(
                f"{network.name} fails on a {batch}x3x{hw[0]}x{hw[1]} input ({_reason(exc)})"
            ) from None
        deadline_s = time.perf_counter() + method.warmup_s
        runs = 1
        while runs < 2 or time.perf_counter() < deadline_s:
            module(inputs)
            runs += 1
        graph = options.mode == "graph"
        try:
            run, per_run = make_runner(
                lambda: module(inputs),
                mode="graph" if graph else "eager",
                device=method.device,
                copies=1,
                network=True,
            )
        except RuntimeError as exc:
            raise SweepError(f"CUDA graph capture failed ({_reason(exc)})") from None
        for _ in range(2):
            run()
        row = measure_run(run, per_run, sensor, method, plan, need_net=False)  # gross energy only
        if row["status"] != "ok":
            raise SweepError(f"bad reading after {method.retries} retries ({row['note']})")
        gpu_ms = _gpu_time_ms(run, per_run) if method.device == "cuda" else None
    if graph:
        note = "CUDA graph replay of the whole forward"
    power_w = row.get("mean_power_w")
    return {
        "latency_ms": row["latency_s_mean"] * 1e3,
        "gpu_latency_ms": gpu_ms,
        "power_w": power_w,
        "idle_power_w": row.get("idle_power_w"),
        "note": (f"{note}; " if note else "")
        + f"{row['windows']} windows of >= {row['reps']} batches, latency = mean over windows"
        + ("" if gpu_ms is None else ", GPU time by CUDA events around each batch")
        + (
            ""
            if power_w is None or row.get("idle_settled") == "true"
            else "; idle did not settle (cap reached)"
        ),
    }


def run_networks(
    options: NetworkOptions,
    *,
    sensor: PowerSensor,
    out_path: Path,
    report: Callable[[str], None] = lambda line: None,
) -> NetworksSummary:
    """Measure every (model, batch) of ``options`` missing from ``out_path``, one appended row each.

    Args:
        options: What to measure and how.
        sensor: Power sensor (:class:`~measure.sensors.NullSensor` for latency only).
        out_path: The CSV; created, or resumed when it exists.
        report: Called with one line for people (progress, warnings).

    Raises:
        SweepError: The options cannot run here, or ``out_path`` is not a networks CSV.
    """
    started_s = time.perf_counter()
    backend = check_options(options)
    method = options.method
    if method.threads:
        torch.set_num_threads(method.threads)
    env = collect_environment(
        device=method.device, dtype=options.precision, batch=0, sensor=sensor.describe()
    )
    power_mode = resolve_power_mode(env["nvpmodel"], options.power_mode, report)
    board = options.board or board_name(env["board"])
    runtime = RUNTIMES[options.mode]
    unit = "gpu" if method.device == "cuda" or backend == "trtexec" else "cpu"
    where = env["device_name"] if unit == "gpu" and method.device == "cuda" else env["board"]
    common = {
        "source": f"measured by splitprune measure networks on {env['hostname']} "
        f"({where}; torch {env['torch']})",
        "board": board,
        "power_mode": power_mode,
        "runtime": runtime,
        "precision": options.precision,
        "unit": unit,
        "power_scope": _power_scope(sensor),
    }
    table = NetworkCsv(out_path)
    plan: WindowPlan | None = None
    measured = skipped = failed = 0
    for spec in options.models:
        network = load_network(spec)
        hw = options.input_hw or network.input_hw
        for batch in options.batches:
            row = {
                **common,
                "batch": batch,
                "model": network.name,
                "source_model": network.source_model,
                "input_hw": f"{hw[0]}" if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}",
            }
            if row_key(row) in table.done:
                skipped += 1
                continue
            if plan is None:  # probe the sensor once, and only when there is something to measure
                facts = sweep_sensor_facts(sensor, method)
                plan = facts.plan
                report(f"sensor {sensor.name}: {facts.describe()}")
            report(f"{network.name} batch {batch} {runtime} {options.precision} ...")
            try:
                if backend == "trtexec":
                    values = trt.measure_with_trtexec(
                        network.module,
                        batch=batch,
                        hw=hw,
                        precision=options.precision,
                        trtexec=trt.find_trtexec(options.trtexec),
                        sensor=sensor,
                        method=method,
                        plan=plan,
                    )
                else:
                    values = _torch_row(network, batch, hw, options, sensor, plan)
            except SweepError as exc:
                report(f"warning: {network.name} batch {batch} not written: {exc}")
                failed += 1
                continue
            power_w = values["power_w"]
            values["energy_mj_per_image"] = (
                None if power_w is None else power_w * values["latency_ms"] / batch
            )
            table.append({**row, **values})
            measured += 1
    return NetworksSummary(
        out_path=Path(out_path),
        measured=measured,
        skipped=skipped,
        failed=failed,
        runtime=runtime,
        backend=backend,
        power_mode=power_mode,
        duration_s=time.perf_counter() - started_s,
    )


def parse_list(text: str, *, what: str) -> Sequence[str]:
    """Split a comma-separated option value; empty items are refused."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise SweepError(f"{what} {text!r} has an empty item; separate values with single commas")
    return items
