"""Run a sweep: measure every grid point not yet in the CSV, one durable row per point.

At sweep start (:mod:`measure.sensor_facts`) the sensor's update period is measured and the windows are
planned from it so that quantisation stays under 1 % (:func:`measure.window.plan_window`); cold idle
and settled idle after a load go into the run header.

Method per point (a "block"): build the layer and random inputs on the device; warm up for
``method.warmup_s``; in ``graph`` mode capture the calls as a CUDA graph (:mod:`measure.modes`); wait
until idle power is stable and read it (:func:`measure.idle.settle_idle`, capped); then
``method.windows`` independent windows. A window synchronises, runs calls back to back for
``plan.run_s`` seconds and synchronises again: latency is the elapsed time over the inferences run.
Power is taken over the window's span from ``plan.lead_s`` after the first call to the last call (with
an energy counter, between the first and last tick inside it), so the device is under steady load
throughout. Per-inference energy is that power (gross, or net of the settled idle power) times the
latency. With ``method.rotate_bytes`` the calls cycle through distinct copies of the layer's weights and
inputs (that many bytes in all), so caches are as cold as inside a network, where every weight is read
once per inference. Latency and gross/net energy get a mean, a standard deviation, a 95 % Student-t
interval and a median over the windows. Points run in a seeded random order, so slow drifts
(temperature, other load) do not line up with layer size. A bad reading (non-finite value, fewer than two
counter ticks, a starved sampler on a sensor without counter, non-positive net energy) is retried
``method.retries`` times and then written as ``flagged``.
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
from .idle import IdleReading, settle_idle
from .layers import LAYERS, build_network
from .modes import make_runner
from .record import SweepLog, check_resumable, collect_environment
from .sensor_facts import SensorFacts, block_power, idle_block_s, measure_sensor_facts, time_only_plan
from .sensors import PowerSensor
from .window import WindowPlan, plan_window

__all__ = [
    "MIN_RATE_FRACTION",
    "SweepSummary",
    "check_method",
    "measure_point",
    "measure_run",
    "run_sweep",
    "summarize",
]

# Two-sided 95 % Student-t quantiles for 1..30 degrees of freedom; 1.96 beyond.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

_MAX_COPIES = 256
_DTYPES = {"fp32": (torch.float32, 4), "fp16": (torch.float16, 2)}
# A sensor without energy counter is flagged when its sampler reached less than this share of its rate.
MIN_RATE_FRACTION = 0.8


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


def _window(
    run: Callable[[], Any], sensor: PowerSensor, device: str, plan: WindowPlan
) -> tuple[float, int, Any]:
    """One window: ``(elapsed seconds, runs, measurement over the span)``."""
    _synchronize(device)
    sensor.begin_window()
    span_start_s = sensor.now() + plan.lead_s
    start_s = time.perf_counter()
    deadline_s = start_s + plan.run_s
    runs = 0
    while True:
        run()
        runs += 1
        if time.perf_counter() >= deadline_s:
            break
    span_end_s = sensor.now()
    _synchronize(device)
    elapsed_s = time.perf_counter() - start_s
    return elapsed_s, runs, sensor.end_window(span=(span_start_s, span_end_s))


def _settled_idle(sensor: PowerSensor, method: Method, plan: WindowPlan) -> IdleReading:
    _synchronize(method.device)
    return settle_idle(
        block_power(sensor, plan.tail_s),
        block_s=idle_block_s(method.idle_s, plan.lead_s),
        tolerance=method.idle_tolerance,
        max_s=method.idle_settle_max_s,
    )


def _problem(
    row: dict[str, Any], sensor: PowerSensor, method: Method, ticks: list[int], *, need_net: bool = True
) -> str:
    if not all(math.isfinite(v) and v > 0 for v in (row["latency_s_mean"], row["latency_s_median"])):
        return "non-finite or zero latency"
    if not sensor.measures_energy:
        return ""
    if sensor.has_counter and min(ticks) < 2:
        return f"only {min(ticks)} energy-counter ticks in a window (< 2); lengthen method.window_s"
    if not all(math.isfinite(row[f"{p}_mean"]) for p in ("energy_j", "net_energy_j")):
        return "non-finite energy (NaN reading)"
    if not sensor.has_counter:
        wanted_hz = 1.0 / sensor.interval_s
        rate_hz = row["sample_rate_hz"]
        if row["samples_min"] < method.min_samples:
            return f"only {row['samples_min']} samples in a window (< {method.min_samples})"
        if not rate_hz >= MIN_RATE_FRACTION * wanted_hz:
            return f"sampler starved: {rate_hz:.0f} of {wanted_hz:.0f} samples/s"
    if need_net and row["net_energy_j_mean"] <= 0:
        return "net energy <= 0 (power not above settled idle)"
    return ""


def _attempt(
    run: Callable[[], Any],
    per_run: int,
    sensor: PowerSensor,
    method: Method,
    plan: WindowPlan,
    need_net: bool,
) -> dict[str, Any]:
    idle = _settled_idle(sensor, method, plan) if sensor.measures_energy else None
    latencies, gross, net, powers, samples, spans, rates, ticks, inferences = ([] for _ in range(9))
    for _ in range(method.windows):
        elapsed_s, runs, m = _window(run, sensor, method.device, plan)
        latency_s = elapsed_s / (runs * per_run)
        latencies.append(latency_s)
        inferences.append(runs * per_run)
        samples.append(m.samples)
        ticks.append(m.ticks)
        if sensor.measures_energy:
            power_w = math.nan if m.mean_power_w is None else m.mean_power_w
            idle_w = math.nan if idle is None else idle.power_w
            gross.append(power_w * latency_s)
            net.append((power_w - idle_w) * latency_s)
            powers.append(power_w)
            spans.append(m.duration_s)
            rates.append(m.sample_rate_hz)
        else:
            spans.append(elapsed_s)
    row: dict[str, Any] = {"reps": min(inferences), "windows": method.windows, "samples_min": min(samples)}
    row.update(_stats("latency_s", latencies))
    row["window_s"] = math.fsum(spans) / len(spans)
    if sensor.measures_energy and idle is not None:
        row.update(_stats("energy_j", gross))
        row.update(_stats("net_energy_j", net))
        row["idle_power_w"] = idle.power_w
        row["mean_power_w"] = math.fsum(powers) / len(powers)
        row["sample_rate_hz"] = min(rates, key=lambda r: r if math.isfinite(r) else -1.0)
        row["idle_settle_s"] = idle.settle_s
        row["idle_settled"] = str(idle.settled).lower()
    problem = _problem(row, sensor, method, ticks, need_net=need_net)
    row["status"], row["note"] = ("flagged", problem) if problem else ("ok", "")
    return row


def measure_point(
    point: Point, method: Method, sensor: PowerSensor, plan: WindowPlan | None = None
) -> dict[str, Any]:
    """Measure one point (see the module docstring) and return its CSV row without ``run_id``.

    Args:
        point: What to measure.
        method: How.
        sensor: Power sensor.
        plan: Window lengths (default: ``method.window_s`` with the sensor's interval as update period;
            :func:`run_sweep` plans them from the measured update period).
    """
    if plan is None:
        plan = _default_plan(sensor, method)
    call, info = _prepare(point, method)
    with torch.inference_mode():
        deadline = time.perf_counter() + method.warmup_s
        runs = 0
        while runs < 2 or time.perf_counter() < deadline:
            call()
            runs += 1
        try:
            run, per_run = make_runner(
                call,
                mode=method.mode,
                device=method.device,
                copies=info["copies"],
                network=point.op == "network",
            )
        except RuntimeError as exc:  # an op that cannot be captured (a host sync): flag the point, go on
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            row = {
                "windows": method.windows,
                "status": "flagged",
                "note": f"CUDA graph capture failed ({reason})",
            }
            return {"point_id": point.point_id, "op": point.op, **info, "mode": method.mode, **row}
        for _ in range(2):
            run()
        row = measure_run(run, per_run, sensor, method, plan)
    return {"point_id": point.point_id, "op": point.op, **info, "mode": method.mode, **row}


def measure_run(
    run: Callable[[], Any],
    per_run: int,
    sensor: PowerSensor,
    method: Method,
    plan: WindowPlan,
    *,
    need_net: bool = True,
) -> dict[str, Any]:
    """Settled idle, then ``method.windows`` windows of ``run`` (retried while the reading is bad).

    Args:
        run: What one call runs (warmed up, graph captured).
        per_run: Inferences one call runs.
        sensor: Power sensor.
        method: Windows, idle and retry settings.
        plan: Window lengths.
        need_net: Whether a net energy <= 0 (power not above settled idle) is a bad reading; callers that
            report gross energy only pass False.

    Returns:
        The row's measured columns (latency, energy and power statistics, ``status``, ``note``).
    """
    row: dict[str, Any] = {}
    for _ in range(method.retries + 1):
        row = _attempt(run, per_run, sensor, method, plan, need_net)
        if row["status"] == "ok":
            break
    return row


def _default_plan(sensor: PowerSensor, method: Method) -> WindowPlan:
    if not sensor.measures_energy:
        return time_only_plan(method.window_s)
    return plan_window(
        window_s=method.window_s,
        update_period_s=sensor.interval_s,
        sample_interval_s=sensor.interval_s,
        has_counter=sensor.has_counter,
        min_samples=method.min_samples,
    )


def check_method(method: Method) -> None:
    """Refuse a method this machine cannot run (no GPU, fp16 or graph mode on the CPU)."""
    if method.device == "cuda" and not torch.cuda.is_available():
        raise SweepError("method.device is cuda but torch sees no GPU; use --device cpu")
    if method.device == "cpu" and method.dtype == "fp16":
        raise SweepError("fp16 is measured on cuda only; use dtype fp32 on the cpu")
    if method.mode == "graph" and method.device != "cuda":
        raise SweepError(f"mode graph needs CUDA graphs, not available on {method.device}; use --mode eager")


def sweep_sensor_facts(sensor: PowerSensor, method: Method) -> SensorFacts:
    """Probe ``sensor`` and read its idle power with the windows and idle rules of ``method``."""
    return measure_sensor_facts(
        sensor,
        device=method.device,
        window_s=method.window_s,
        min_samples=method.min_samples,
        idle_s=method.idle_s,
        idle_tolerance=method.idle_tolerance,
        idle_settle_max_s=method.idle_settle_max_s,
        probe_s=method.probe_s,
    )


def run_sweep(
    grid: Grid,
    *,
    sensor: PowerSensor,
    out_path: Path,
    progress: bool = True,
    method: Method | None = None,
    report: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Measure every point of ``grid`` missing from ``out_path``, appending one row per point.

    Args:
        grid: The parsed grid.
        sensor: Power sensor (``NullSensor`` for latency only).
        out_path: The CSV; created, or resumed if it exists.
        progress: Show a progress bar with ETA on stderr.
        method: Override of ``grid.method`` (e.g. another device or mode).
        report: Called with one line for people once the sensor has been probed (update period,
            window plan, cold and settled idle).

    Raises:
        SweepError: ``out_path`` holds a sweep from other conditions, or the method cannot run here.
    """
    from tqdm import tqdm

    method = method or grid.method
    check_method(method)
    if method.threads:
        torch.set_num_threads(method.threads)
    env = collect_environment(
        device=method.device, dtype=method.dtype, batch=method.batch, sensor=sensor.describe()
    )
    env.update(
        {"grid": str(grid.path), "grid_sha256": grid.sha256, "method": asdict(method), "mode": method.mode}
    )
    check_resumable(Path(out_path), env)
    started_s = time.perf_counter()
    facts = sweep_sensor_facts(sensor, method)
    env.update(facts.header())
    if report is not None:
        report(facts.describe())
    log = SweepLog(out_path, env)
    todo = [p for p in grid.points if p.point_id not in log.done]
    random.Random(method.seed).shuffle(todo)
    flagged = 0
    try:
        with tqdm(total=len(todo), unit="point", disable=not progress, dynamic_ncols=True) as bar:
            for point in todo:
                bar.set_postfix_str(point.point_id[:60])
                row = measure_point(point, method, sensor, facts.plan)
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
