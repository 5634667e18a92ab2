"""TensorRT for ``python -m measure networks --mode tensorrt``: torch-tensorrt or ``trtexec``.

Two backends, chosen by :func:`pick_backend`:

- ``torch-tensorrt``: ``torch_tensorrt.compile`` turns the module into a TensorRT-backed module that
  :mod:`measure.networks` times like an eager one (power windows, CUDA events). fp32 and fp16; int8
  there needs calibration data, so int8 goes to ``trtexec``.
- ``trtexec`` (shipped with TensorRT; on a Jetson at ``/usr/src/tensorrt/bin/trtexec``, often not on
  ``PATH``): the network is exported to ONNX with ``torch.onnx`` at a fixed batch, an engine is built
  once (``--fp16``, ``--int8`` as asked; int8 without calibration data uses trtexec's random dynamic
  ranges, fine for timing, not for accuracy), then timed in a second run while the power sensor samples.
  Latency is trtexec's mean host ``Latency`` and GPU time its mean ``GPU Compute Time``
  (:func:`parse_trtexec_log`). Power is taken over the timing phase only: it starts when trtexec logs
  ``Starting inference`` (plus its warm-up and the sensor's lead) and ends before its last second of
  inference (:func:`measure_with_trtexec`).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from .errors import SweepError
from .grid import Method
from .idle import settle_idle
from .sensor_facts import block_power, idle_block_s
from .sensors import PowerSensor
from .window import WindowPlan

__all__ = [
    "BACKENDS",
    "JETSON_TRTEXEC",
    "TrtexecRun",
    "TrtexecTimes",
    "compile_torch_tensorrt",
    "find_trtexec",
    "measure_with_trtexec",
    "parse_trtexec_log",
    "pick_backend",
    "run_trtexec",
]

BACKENDS = ("auto", "torch-tensorrt", "trtexec")
JETSON_TRTEXEC = Path("/usr/src/tensorrt/bin/trtexec")
REFUSAL = (
    "--mode tensorrt needs torch-tensorrt or trtexec; install torch-tensorrt (pip) or TensorRT's "
    "trtexec (on a Jetson: JetPack's /usr/src/tensorrt/bin/trtexec, or pass --trtexec PATH), "
    "or use --mode eager"
)

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
# TensorRT 7.2 and newer: "[I] Latency: min = 1.1 ms, max = ..., mean = 1.23 ms, median = ..."
_SUMMARY = re.compile(rf"\[I\]\s+(Latency|GPU Compute Time):.*?\bmean = {_NUMBER} ms")
# TensorRT 7.0/7.1: a "[I] Host Latency" or "[I] GPU Compute" heading, then "[I] mean: 1.23 ms ..."
_HEADING = re.compile(r"\[I\]\s+(Host Latency|GPU Compute)\s*$")
_OLD_MEAN = re.compile(rf"\[I\]\s+mean:\s*{_NUMBER} ms")
_THROUGHPUT = re.compile(rf"\[I\]\s+Throughput:\s*{_NUMBER} qps")
_VERSION = re.compile(r"TensorRT version:\s*([0-9.]+)")
_VERSION_TAG = re.compile(r"\[TensorRT v(\d+)\]")
START_MARK = "Starting inference"


@dataclass(frozen=True)
class TrtexecTimes:
    """Timings parsed from a trtexec log.

    Attributes:
        latency_ms: Mean host latency per inference (one batch) in milliseconds: enqueue, copies in and
            out and GPU compute.
        gpu_latency_ms: Mean GPU compute time per inference in milliseconds (None if not logged).
        throughput_qps: Inferences per second trtexec reports (None if not logged).
        tensorrt_version: TensorRT's version as logged (empty if not logged).
    """

    latency_ms: float
    gpu_latency_ms: float | None
    throughput_qps: float | None
    tensorrt_version: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class TrtexecRun:
    """One timing run of trtexec.

    Attributes:
        times: The parsed timings.
        inference_start_s: When ``Starting inference`` was logged, on the clock passed to
            :func:`run_trtexec` (None if it never was).
        end_s: When trtexec exited, on that clock.
    """

    times: TrtexecTimes
    inference_start_s: float | None
    end_s: float


def parse_trtexec_log(text: str) -> TrtexecTimes:
    """Read mean latency and GPU compute time from trtexec's performance summary.

    Raises:
        SweepError: The log holds no latency (trtexec failed, or printed an unknown format).
    """
    means: dict[str, float] = {}
    heading = ""
    for line in text.splitlines():
        match = _SUMMARY.search(line)
        if match:
            means.setdefault("gpu" if match.group(1) == "GPU Compute Time" else "host", float(match.group(2)))
            continue
        match = _HEADING.search(line)
        if match:
            heading = "gpu" if match.group(1) == "GPU Compute" else "host"
            continue
        match = _OLD_MEAN.search(line)
        if match and heading:
            means.setdefault(heading, float(match.group(1)))
            heading = ""
    if "host" not in means:
        failed = [line for line in text.splitlines() if "[E]" in line or "FAILED" in line]
        reason = failed[-1].strip() if failed else "no 'Latency: ... mean = ... ms' line"
        raise SweepError(
            f"trtexec gave no latency ({reason[:200]}); run the trtexec command by hand to see why"
        )
    throughput = _THROUGHPUT.search(text)
    version = _VERSION.search(text) or _VERSION_TAG.search(text)
    return TrtexecTimes(
        latency_ms=means["host"],
        gpu_latency_ms=means.get("gpu"),
        throughput_qps=float(throughput.group(1)) if throughput else None,
        tensorrt_version=version.group(1) if version else "",
    )


def find_trtexec(explicit: Path | None = None) -> Path | None:
    """``explicit``, else ``trtexec`` on ``PATH``, else JetPack's copy; None when there is none.

    Raises:
        SweepError: ``explicit`` is not a file.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise SweepError(f"--trtexec {explicit} is not a file; point it at TensorRT's trtexec binary")
        return explicit
    found = shutil.which("trtexec")
    if found:
        return Path(found)
    return JETSON_TRTEXEC if JETSON_TRTEXEC.is_file() else None


def pick_backend(choice: str, *, precision: str, trtexec: Path | None) -> str:
    """The backend to use: torch-tensorrt when importable (not for int8), else trtexec.

    Raises:
        SweepError: Neither is available, or the one asked for is missing.
    """
    has_torch_trt = find_spec("torch_tensorrt") is not None
    if choice == "torch-tensorrt":
        if not has_torch_trt:
            raise SweepError(
                "--tensorrt-backend torch-tensorrt: torch_tensorrt is not importable; "
                "pip install torch-tensorrt"
            )
        if precision == "int8":
            raise SweepError(
                "int8 through torch-tensorrt needs calibration data; use --tensorrt-backend trtexec"
            )
        return choice
    if choice == "trtexec" or not has_torch_trt or precision == "int8":
        if trtexec is None:
            raise SweepError(REFUSAL)
        if find_spec("onnx") is None:
            raise SweepError(
                "trtexec builds from an ONNX export, which needs the onnx package; pip install onnx"
            )
        return "trtexec"
    return "torch-tensorrt"


def compile_torch_tensorrt(module: Any, example: Any, *, precision: str) -> Any:
    """Compile ``module`` (already on the GPU in its precision) for inputs like ``example``.

    Raises:
        SweepError: torch-tensorrt failed.
    """
    import torch
    import torch_tensorrt

    dtype = torch.float16 if precision == "fp16" else torch.float32
    try:
        return torch_tensorrt.compile(module, inputs=[example], enabled_precisions={dtype})
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise SweepError(
            f"torch-tensorrt could not compile the model ({reason}); try --tensorrt-backend trtexec"
        ) from None


def export_onnx(module: Any, example: Any, path: Path) -> None:
    """Export ``module`` for the fixed input ``example`` to ONNX (the TorchScript exporter).

    Raises:
        SweepError: The exporter failed.
    """
    import torch

    try:
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=17)
    except TypeError:  # torch before 2.5 has no dynamo argument
        torch.onnx.export(module, (example,), str(path), opset_version=17)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise SweepError(f"ONNX export failed ({reason}); use --mode eager or graph for this model") from None


def _precision_flags(precision: str) -> list[str]:
    if precision == "fp16":
        return ["--fp16"]
    if precision == "int8":
        return ["--int8", "--fp16"]  # fp16 for the layers TensorRT keeps out of int8, as deployments do
    return []


def build_engine(trtexec: Path, onnx: Path, engine: Path, *, precision: str) -> str:
    """Build and save an engine (with a one-inference run, which every trtexec version accepts).

    Returns:
        The build log.

    Raises:
        SweepError: trtexec failed.
    """
    command = [str(trtexec), f"--onnx={onnx}", f"--saveEngine={engine}", *_precision_flags(precision)]
    command += ["--iterations=1", "--duration=0", "--warmUp=0"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not engine.is_file():
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        errors = [line for line in lines if "[E]" in line] or lines[-1:] or ["no output"]
        raise SweepError(
            f"trtexec could not build the engine ({errors[-1].strip()[:200]}); run {' '.join(command)}"
        )
    return result.stdout


def run_trtexec(
    trtexec: Path, engine: Path, *, duration_s: float, warmup_s: float, clock: Any = time.perf_counter
) -> TrtexecRun:
    """Time a saved engine; note (on ``clock``) when inference starts and when trtexec exits.

    Raises:
        SweepError: trtexec failed or logged no latency.
    """
    command = [
        str(trtexec),
        f"--loadEngine={engine}",
        f"--duration={max(1, round(duration_s))}",
        f"--warmUp={round(warmup_s * 1e3)}",
    ]
    lines: list[str] = []
    start_s = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if start_s is None and START_MARK in line:
                start_s = clock()
            lines.append(line)
        code = process.wait()
    end_s = clock()
    text = "".join(lines)
    if code != 0:
        errors = [line for line in lines if "[E]" in line] or lines[-1:] or ["no output"]
        raise SweepError(f"trtexec failed ({errors[-1].strip()[:200]}); run {' '.join(command)}")
    return TrtexecRun(parse_trtexec_log(text), start_s, end_s)


def measure_with_trtexec(
    module: Any,
    *,
    batch: int,
    hw: tuple[int, int],
    precision: str,
    trtexec: Path | None,
    sensor: PowerSensor,
    method: Method,
    plan: WindowPlan,
) -> dict[str, Any]:
    """Export, build and time ``module`` with trtexec while ``sensor`` samples its steady inference.

    Args:
        module: The network (fp32; exported as is).
        batch: Batch size (fixed in the export).
        hw: Input height and width in pixels.
        precision: ``fp32``, ``fp16`` or ``int8``.
        trtexec: The trtexec binary (:func:`find_trtexec`).
        sensor: Power sensor (a time-only one leaves the power empty).
        method: Warm-up and idle settings.
        plan: Window lengths: the timed phase holds ``method.windows`` of them.

    Returns:
        The row's ``latency_ms``, ``gpu_latency_ms``, ``power_w``, ``idle_power_w`` and ``note``.

    Raises:
        SweepError: Export, build or timing failed, or the power reading is not finite.
    """
    import torch

    if trtexec is None:
        raise SweepError(REFUSAL)
    duration_s = max(2.0, math.ceil(plan.lead_s + plan.target_s * method.windows + plan.tail_s + 1.0))
    with tempfile.TemporaryDirectory(prefix="measure-trt-") as folder:
        onnx, engine = Path(folder) / "model.onnx", Path(folder) / "model.engine"
        example = torch.randn(batch, 3, *hw)
        with torch.no_grad():
            export_onnx(module.float().eval(), example, onnx)
        build_engine(trtexec, onnx, engine, precision=precision)
        idle = None
        if sensor.measures_energy:
            idle = settle_idle(
                block_power(sensor, plan.tail_s),
                block_s=idle_block_s(method.idle_s, plan.lead_s),
                tolerance=method.idle_tolerance,
                max_s=method.idle_settle_max_s,
            )
        sensor.begin_window()
        try:
            timing = run_trtexec(
                trtexec, engine, duration_s=duration_s, warmup_s=method.warmup_s, clock=sensor.now
            )
        except BaseException:
            sensor.end_window()
            raise
        started_s = timing.inference_start_s
        span = None
        if started_s is not None:  # steady inference: after the warm-up and a lead, up to the last second
            steady_s = started_s + method.warmup_s
            span = (steady_s + plan.lead_s, min(steady_s + duration_s - 1.0, timing.end_s))
        measurement = sensor.end_window(span=span)
    times = timing.times
    note = (
        f"trtexec{' ' + times.tensorrt_version if times.tensorrt_version else ''}, {duration_s:.0f} s timed"
    )
    note += ", latency = mean host latency, GPU time = mean GPU compute time"
    if precision == "int8":
        note += "; int8 without calibration data (trtexec's random dynamic ranges): timing only, not accuracy"
    power_w = None
    if sensor.measures_energy:
        power_w = measurement.mean_power_w
        if started_s is None:
            note += "; no power: trtexec did not log 'Starting inference'"
            power_w = None
        elif power_w is None or not math.isfinite(power_w):
            raise SweepError("non-finite power over trtexec's inference phase; check the sensor")
    return {
        "latency_ms": times.latency_ms,
        "gpu_latency_ms": times.gpu_latency_ms,
        "power_w": power_w,
        "idle_power_w": None if idle is None else idle.power_w,
        "note": note,
    }
