"""Run a sweep: measure every grid point not yet in the CSV, one durable row per point.

Method per point (a "block"): build the layer and random inputs on the device; warm up for
``method.warmup_s``; time one call to choose ``reps``, the calls per window, so that a window lasts at
least ``method.window_s`` and, for sampling sensors, holds ``method.min_samples`` samples; measure idle
power for ``method.idle_s``; then ``method.windows`` independent windows, each synchronised before and
after. Per-inference energy is the window's mean power (gross, or net of idle power) times the time
the calls took, divided by ``reps``. With ``method.rotate_bytes`` the calls cycle through distinct
copies of the layer's weights and inputs (that many bytes in all), so caches are as cold as inside a
network, where every weight is read once per inference. Latency and gross/net energy get a mean, a
standard deviation, a 95 % Student-t interval and a median over the windows (the median resists a
window disturbed by another process). Points run in a seeded random order, so slow drifts
(temperature, other load) do not line up with layer size. A bad reading (non-finite value, too few
samples, non-positive net energy) is retried ``method.retries`` times and then written as ``flagged``.
"""

from __future__ import annotations

import copy
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import SweepError
from .grid import Grid, Method, Point
from .layers import LAYERS, build_network
from .record import SweepLog, collect_environment
from .sensors import PowerSensor

__all__ = ["SweepSummary", "measure_point", "run_sweep", "summarize"]

# Two-sided 95 % Student-t quantiles for 1..30 degrees of freedom; 1.96 beyond.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

_MAX_COPIES = 256
_DTYPES = {"fp32": (torch.float32, 4), "fp16": (torch.float16, 2)}


@dataclass(frozen=True)
class SweepSummary:
    """What a call to :func:`run_sweep` did.

    Attributes:
        out_path: The CSV.
        run_id: This run's id in the CSV.
        measured: Points measured now (ok or flagged).
        flagged: Of those, points flagged as bad readings.
        skipped: Points already in the CSV.
        duration_s: Wall time of the run in seconds.
    """

    out_path: Path
    run_id: str
    measured: int
    flagged: int
    skipped: int
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {**asdict(self), "out_path": str(self.out_path)}


def summarize(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation and 95 % interval half-width (Student t) of ``values``."""
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    dof = len(values) - 1
    t95 = _T95[dof - 1] if dof <= len(_T95) else 1.96
    return mean, std, t95 * std / math.sqrt(len(values))


def _stats(prefix: str, values: list[float]) -> dict[str, float]:
    mean, std, ci95 = summarize(values)
    median = statistics.median(values) if all(map(math.isfinite, values)) else math.nan
    return {f"{prefix}_mean": mean, f"{prefix}_std": std, f"{prefix}_ci95": ci95, f"{prefix}_median": median}


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _prepare(point: Point, method: Method) -> tuple[Callable[[], Any], dict[str, Any]]:
    dtype, nbytes = _DTYPES[method.dtype]
    torch.manual_seed(method.seed)
    if point.op == "network":
        shape = tuple(point.params["input_shape"])
        module, inputs = build_network(point.params["model"], shape)
        info = {"kind": "network", "network": point.params["model"], "input_shape": shape}
    else:
        spec = LAYERS[point.op]
        module, inputs = spec.build(point.params, method.batch)
        counts = spec.count(point.params, method.batch, nbytes)
        info = {
            "kind": counts.kind,
            "macs": counts.macs,
            "mem_bytes": counts.mem_bytes,
            "kernels": counts.kernels,
            "input_shape": counts.input_shape,
        }
    module = module.to(device=method.device, dtype=dtype).eval()
    inputs = tuple(t.to(device=method.device, dtype=dtype) for t in inputs)
    info["input_shape"] = "x".join(str(d) for d in info["input_shape"])
    copies = 1
    if point.op != "network" and method.rotate_bytes > 0:
        footprint = sum(t.numel() * t.element_size() for t in (*module.parameters(), *inputs))
        copies = max(1, min(_MAX_COPIES, math.ceil(method.rotate_bytes / max(footprint, 1))))
    info["copies"] = copies
    if copies == 1:
        return (lambda: module(*inputs)), info
    # Cycle through distinct copies of the weights and inputs, more bytes than the last-level cache,
    # so that every call reads them from memory as a layer inside a network does.
    modules = [module] + [copy.deepcopy(module) for _ in range(copies - 1)]
    batches = [inputs] + [tuple(torch.randn_like(t) for t in inputs) for _ in range(copies - 1)]
    state = {"i": 0}

    def call() -> Any:
        i = state["i"] = (state["i"] + 1) % copies
        return modules[i](*batches[i])

    return call, info


def _window(call: Callable[[], Any], reps: int, sensor: PowerSensor, device: str) -> tuple[float, Any]:
    _synchronize(device)
    sensor.begin_window()
    start_s = time.perf_counter()
    for _ in range(reps):
        call()
    _synchronize(device)
    elapsed_s = time.perf_counter() - start_s
    return elapsed_s, sensor.end_window()


def _idle_power_w(sensor: PowerSensor, idle_s: float, device: str) -> float:
    _synchronize(device)
    sensor.begin_window()
    time.sleep(idle_s)
    measurement = sensor.end_window()
    if measurement.energy_j is None or measurement.duration_s <= 0:
        return math.nan
    return measurement.energy_j / measurement.duration_s


def _attempt(call: Callable[[], Any], reps: int, sensor: PowerSensor, method: Method) -> dict[str, Any]:
    idle_w = _idle_power_w(sensor, method.idle_s, method.device) if sensor.measures_energy else None
    latencies, gross, net, powers, samples = [], [], [], [], []
    for _ in range(method.windows):
        elapsed_s, m = _window(call, reps, sensor, method.device)
        latencies.append(elapsed_s / reps)
        samples.append(m.samples)
        if sensor.measures_energy:
            # mean window power x the time the work took: the sensor's window also spans the
            # thread start/stop around the work, which must not be charged to the layer
            power_w = math.nan if m.mean_power_w is None else m.mean_power_w
            idle = math.nan if idle_w is None else idle_w
            gross.append(power_w * elapsed_s / reps)
            net.append((power_w - idle) * elapsed_s / reps)
            powers.append(power_w)
    row: dict[str, Any] = {"reps": reps, "windows": method.windows, "samples_min": min(samples)}
    row.update(_stats("latency_s", latencies))
    problem = ""
    if not all(math.isfinite(v) and v > 0 for v in latencies):
        problem = "non-finite or zero latency"
    if sensor.measures_energy:
        row.update(_stats("energy_j", gross))
        row.update(_stats("net_energy_j", net))
        row["idle_power_w"] = idle_w
        row["mean_power_w"] = math.fsum(powers) / len(powers)
        if not all(math.isfinite(v) for v in gross + net):
            problem = "non-finite energy (NaN reading)"
        elif min(samples) < method.min_samples:
            problem = f"only {min(samples)} samples in a window (< {method.min_samples})"
        elif row["net_energy_j_mean"] <= 0:
            problem = "net energy <= 0 (idle power drifted)"
    row["status"], row["note"] = ("flagged", problem) if problem else ("ok", "")
    return row


def measure_point(point: Point, method: Method, sensor: PowerSensor) -> dict[str, Any]:
    """Measure one point (see the module docstring) and return its CSV row without ``run_id``."""
    call, info = _prepare(point, method)
    window_s = method.window_s
    if sensor.measures_energy:
        window_s = max(window_s, 1.25 * method.min_samples * sensor.interval_s)
    with torch.inference_mode():
        deadline = time.perf_counter() + method.warmup_s
        runs = 0
        while runs < 2 or time.perf_counter() < deadline:
            call()
            runs += 1
        _synchronize(method.device)
        start_s = time.perf_counter()
        call()
        _synchronize(method.device)
        one_s = max(time.perf_counter() - start_s, 1e-7)
        reps = max(1, math.ceil(window_s / one_s))
        for _ in range(method.retries + 1):
            row = _attempt(call, reps, sensor, method)
            if row["status"] == "ok":
                break
    return {"point_id": point.point_id, "op": point.op, **info, **row}


def run_sweep(
    grid: Grid,
    *,
    sensor: PowerSensor,
    out_path: Path,
    progress: bool = True,
    method: Method | None = None,
) -> SweepSummary:
    """Measure every point of ``grid`` missing from ``out_path``, appending one row per point.

    Args:
        grid: The parsed grid.
        sensor: Power sensor (``NullSensor`` for latency only).
        out_path: The CSV; created, or resumed if it exists.
        progress: Show a progress bar with ETA on stderr.
        method: Override of ``grid.method`` (e.g. another device).

    Raises:
        SweepError: ``out_path`` holds a sweep from other conditions.
    """
    from tqdm import tqdm

    method = method or grid.method
    if method.device == "cuda" and not torch.cuda.is_available():
        raise SweepError("method.device is cuda but torch sees no GPU; use --device cpu")
    if method.device == "cpu" and method.dtype == "fp16":
        raise SweepError("fp16 is measured on cuda only; use dtype fp32 on the cpu")
    if method.threads:
        torch.set_num_threads(method.threads)
    env = collect_environment(
        device=method.device, dtype=method.dtype, batch=method.batch, sensor=sensor.describe()
    )
    env.update({"grid": str(grid.path), "grid_sha256": grid.sha256, "method": asdict(method)})
    log = SweepLog(out_path, env)
    started_s = time.perf_counter()
    todo = [p for p in grid.points if p.point_id not in log.done]
    random.Random(method.seed).shuffle(todo)
    flagged = 0
    try:
        with tqdm(total=len(todo), unit="point", disable=not progress, dynamic_ncols=True) as bar:
            for point in todo:
                bar.set_postfix_str(point.point_id[:60])
                row = measure_point(point, method, sensor)
                log.append({"run_id": log.run_id, **row})
                flagged += row["status"] == "flagged"
                bar.update()
    finally:
        log.close()
    return SweepSummary(
        out_path=Path(out_path),
        run_id=log.run_id,
        measured=len(todo),
        flagged=flagged,
        skipped=len(grid.points) - len(todo),
        duration_s=time.perf_counter() - started_s,
    )
