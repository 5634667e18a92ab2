"""Whole-network measurements (the column format of ``shared/data/jetson_published/networks.csv``).

Rows name a torchvision model, an input size, a batch, a runtime (``tensorrt``, ``pytorch-eager``,
``pytorch-graph``), a precision, a power mode and what was measured: latency per batch, and power or
energy per image (gross: idle included). ``python -m measure networks`` writes the same columns.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

__all__ = ["RUNTIME_MODES", "NetworkRow", "read_networks"]

RUNTIME_MODES = {"tensorrt": "tensorrt", "pytorch-eager": "eager", "pytorch-graph": "graph"}
"""CSV ``runtime`` -> splitprune mode."""
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

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The traced input shape."""
        return (self.batch, 3, self.input_hw, self.input_hw)

    @property
    def label(self) -> str:
        """Short label: ``resnet50 tensorrt fp16 b1 MAXN``."""
        return (
            f"{self.model.split(':')[-1]} {self.mode} {self.precision} b{self.batch} {self.power_mode or '-'}"
        )


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


def _row(path: Path, line: int, raw: dict[str, str]) -> NetworkRow:
    runtime = raw["runtime"].strip()
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
    mode = raw["power_mode"].strip()
    model = raw["model"].strip()
    return NetworkRow(
        line=line,
        board=raw["board"].strip(),
        power_mode=None if mode in ("", "not stated") else mode,
        mode=RUNTIME_MODES[runtime],
        precision=raw["precision"].strip(),
        batch=batch,
        model=model if ":" in model else f"torchvision:{model}",
        input_hw=input_hw,
        latency_s=latency_s,
        energy_j=energy_j,
        source=raw.get("source", "").strip(),
    )


def _energy_j(raw: dict[str, str], batch: int, latency_s: float) -> float | None:
    per_image = raw.get("energy_mj_per_image", "").strip()
    if per_image:
        return float(per_image) / 1e3 * batch
    power = raw.get("power_w", "").strip()
    return float(power) * latency_s if power else None
