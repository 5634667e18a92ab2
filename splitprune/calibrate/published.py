"""Whole-network measurements (the column format of ``shared/data/jetson_published/networks.csv``).

Rows name a torchvision model, an input size, a batch, a runtime (``tensorrt``, ``pytorch-eager``,
``pytorch-graph``), a precision, a power mode and what was measured: latency per batch, and power or
energy per image (gross: idle included). ``python -m measure networks`` writes the same columns.

Published files annotate some cells (``tensorrt (NVIDIA MLPerf LWIS/BERT harness)``, ``int8 (NVIDIA
config precision=int8)``): the first word is the value, the rest a note. From those notes a row also
gets how its TensorRT engine was launched (:data:`LAUNCHES`: MLPerf's LWIS harness replays CUDA
graphs, every other harness enqueues) and the clocks a power mode states (``GPU 930.75 MHz, EMC 3199
MHz, CPU 1036.8 MHz x2 cores``), so a row run at a custom MaxQ setting is priced at its own clocks.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

__all__ = ["LAUNCHES", "RUNTIME_MODES", "NetworkRow", "RowClocks", "read_networks"]

RUNTIME_MODES = {"tensorrt": "tensorrt", "pytorch-eager": "eager", "pytorch-graph": "graph"}
"""CSV ``runtime`` -> splitprune mode."""
LAUNCHES = ("enqueue", "cuda-graph")
"""How a TensorRT engine is launched: one enqueue per inference, or a captured CUDA graph replayed."""
_GRAPH_HARNESSES = ("LWIS", "CUDA graph", "cuda-graph", "useCudaGraph")
"""Notes that mark a CUDA-graph launch (NVIDIA's MLPerf LWIS harness captures its engines)."""
_MHZ = r"([0-9]+(?:\.[0-9]+)?) ?MHz"
_REQUIRED = (
    "board",
    "power_mode",
    "runtime",
    "precision",
    "unit",
    "batch",
    "model",
    "input_hw",
    "latency_ms",
)


@dataclass(frozen=True)
class RowClocks:
    """Clock caps a row's power-mode cell states (None where it does not state one).

    Attributes:
        gpu_clock_hz: GPU clock cap.
        emc_clock_hz: Memory (EMC) clock cap.
        cpu_clock_hz: CPU clock cap.
        cpu_cores: CPU cores online.
    """

    gpu_clock_hz: float | None
    emc_clock_hz: float | None
    cpu_clock_hz: float | None
    cpu_cores: int | None

    @classmethod
    def parse(cls, text: str) -> RowClocks | None:
        """The clocks in ``text`` (``GPU max 675.75 MHz, EMC 1600 MHz, 2 CPU cores max 1190.4 MHz``)."""

        def mhz(unit: str) -> float | None:
            found = re.search(unit + r"[^,;)]*?" + _MHZ, text)
            return float(found.group(1)) * 1e6 if found else None

        cores = re.search(r"x ?([0-9]+) cores|([0-9]+) CPU cores", text)
        clocks = cls(mhz("GPU"), mhz("EMC"), mhz("CPU"),
                     int(cores.group(1) or cores.group(2)) if cores else None)  # fmt: skip
        return None if clocks.gpu_clock_hz is None else clocks


@dataclass(frozen=True)
class NetworkRow:
    """One whole-network measurement.

    Attributes:
        line: Line number in the file (for messages).
        board: Board as the file names it (``jetson-tx2``).
        power_mode: Power mode, or None where the source does not state it.
        mode: splitprune runtime mode (``tensorrt``, ``eager``, ``graph``).
        precision: ``fp32``, ``fp16`` or ``int8``.
        batch: Images per inference.
        model: ``torchvision:NAME`` spec.
        input_hw: Input height and width.
        latency_s: Seconds per batch.
        energy_j: Gross joules per batch, or None without a power measurement.
        source: Where the figure comes from.
        launch: TensorRT launch (:data:`LAUNCHES`), None outside TensorRT or where the source does not
            say (an engine served through Triton).
        clocks: Clock caps the power-mode cell states, None where it names a mode only.
    """

    line: int
    board: str
    power_mode: str | None
    mode: str
    precision: str
    batch: int
    model: str
    input_hw: int
    latency_s: float
    energy_j: float | None
    source: str
    launch: str | None = None
    clocks: RowClocks | None = None

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The traced input shape."""
        return (self.batch, 3, self.input_hw, self.input_hw)

    @property
    def label(self) -> str:
        """Short label: ``resnet50 tensorrt fp16 b1 MAXN`` (``cuda-graph`` after the runtime where so)."""
        mode = f"{self.mode} {self.launch}" if self.launch == "cuda-graph" else self.mode
        return f"{self.model.split(':')[-1]} {mode} {self.precision} b{self.batch} {self.power_mode or '-'}"


def read_networks(path: Path, *, gpu_only: bool = True) -> list[NetworkRow]:
    """Read a networks CSV; DLA rows are skipped when ``gpu_only``.

    Raises:
        DataError: The file is missing, lacks a column, or a row has a bad number.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"cannot read networks file {path}: {exc.strerror}") from None
    reader = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path}: not a networks CSV (no column {missing[0]!r}); see measure networks --help")
    rows = []
    for number, raw in enumerate(reader, start=2):
        if gpu_only and raw.get("unit", "gpu") != "gpu":
            continue
        rows.append(_row(path, number, raw))
    if not rows:
        raise DataError(f"{path}: no GPU rows")
    return rows


def _first_word(cell: str) -> str:
    return cell.strip().split(" ")[0].rstrip(":,;")


def _power_mode(cell: str) -> str | None:
    """The mode a power-mode cell names: None where unstated or a non-power MLPerf run (the board's top)."""
    text = cell.strip()
    if text in ("", "not stated") or text.startswith("not stated") or "non-power run" in text:
        return None
    return _first_word(text)


def _model_spec(name: str) -> str:
    if ":" in name:
        return name
    if name.lower().startswith(("yolo", "yolov")):
        return f"ultralytics:{name.lower()}"
    return f"torchvision:{name}"


def _row(path: Path, line: int, raw: dict[str, str]) -> NetworkRow:
    runtime_cell = raw["runtime"].strip()
    runtime = _first_word(runtime_cell)
    if runtime not in RUNTIME_MODES:
        raise DataError(f"{path}:{line}: unknown runtime {runtime!r}; use {', '.join(RUNTIME_MODES)}")
    try:
        batch = int(raw["batch"])
        latency_s = float(raw["latency_ms"]) / 1e3
        input_hw = int(raw["input_hw"])
        energy_j = _energy_j(raw, batch, latency_s)
    except ValueError as exc:
        raise DataError(f"{path}:{line}: bad number ({exc})") from None
    if batch < 1 or not latency_s > 0 or not math.isfinite(latency_s):
        raise DataError(f"{path}:{line}: batch and latency_ms must be positive")
    mode = RUNTIME_MODES[runtime]
    notes = " ".join((runtime_cell, raw.get("note", ""), raw.get("source", "")))
    launch = None
    if mode == "tensorrt" and "Triton" not in runtime_cell:  # Triton's launch is not stated: leave it None
        launch = "cuda-graph" if any(h in notes for h in _GRAPH_HARNESSES) else "enqueue"
    return NetworkRow(
        line=line,
        board=raw["board"].strip(),
        power_mode=_power_mode(raw["power_mode"]),
        mode=mode,
        precision=_first_word(raw["precision"]),
        batch=batch,
        model=_model_spec(raw["model"].strip()),
        input_hw=input_hw,
        latency_s=latency_s,
        energy_j=energy_j,
        source=raw.get("source", "").strip(),
        launch=launch,
        clocks=RowClocks.parse(raw["power_mode"]),
    )


def _energy_j(raw: dict[str, str], batch: int, latency_s: float) -> float | None:
    per_image = raw.get("energy_mj_per_image", "").strip()
    if per_image:
        return float(per_image) / 1e3 * batch
    power = raw.get("power_w", "").strip()
    return float(power) * latency_s if power else None
