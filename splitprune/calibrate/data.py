"""Read a ``measure`` sweep CSV into :class:`SweepData` (one-line :class:`DataError` on any fault).

The CSV comes from ``python -m measure sweep``: a magic first line, ``# run <id> {json}`` headers, then
one row per point. Values used downstream are the per-window medians (robust to a window disturbed by
another process); flagged rows are kept but marked ``ok=False`` and never fitted. Values are read as
written: a non-positive measurement is the fit's to drop (with a warning), not a reason to refuse the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..board import GemmShape
from ..errors import DataError

__all__ = ["MAGIC", "SweepData", "SweepRow", "read_sweep"]

_NEEDED: tuple[str, ...] = ("point_id", "kind", "network", "input_shape", "macs", "mem_bytes", "kernels")
_NEEDED += ("status", "latency_s_median", "energy_j_median", "net_energy_j_median")

MAGIC = "# splitprune-measure sweep v1"


def sweep_gemm_shape(point_id: str, input_shape: tuple[int, ...]) -> GemmShape | None:
    """The GEMM shape of a sweep's conv, dwconv or linear point, from its id and input shape.

    Convs are padded to keep ``spatial / stride`` (as ``measure`` builds them): rows are the batch
    times the output pixels, columns the output channels; a linear point's rows are its batch rows.
    """
    op, _, text = point_id.partition(":")
    params: dict[str, int] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if value.lstrip("-").isdigit():
            params[key] = int(value)
    try:
        if op in ("conv", "dwconv"):
            k, stride, spatial = params["kernel_size"], params.get("stride", 1), params["spatial"]
            out = (spatial + 2 * (k // 2) - k) // stride + 1
            cols = params["channels"] if op == "dwconv" else params["kernels"]
            return 1, input_shape[0] * out * out, cols
        if op == "linear":
            return 1, math.prod(input_shape[:-1]), params["out_features"]
    except (KeyError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class SweepRow:
    """One measured point: medians over its windows, per inference (energies ``None`` without a sensor).

    Attributes:
        line: Line number in the CSV.
        point_id: The point's identity in the sweep.
        kind: Layer kind as the graph names it, or ``network``.
        network: Model spec of a network row, else empty.
        input_shape: Input shape of the layer or network.
        macs: Multiply-accumulates (0 for network rows: traced at validation).
        mem_bytes: Bytes read plus written.
        kernels: Conv output channels, else 0.
        ok: False for rows the sweep flagged as bad readings.
        latency_s: Mean latency in seconds.
        energy_j: Mean gross energy in joules.
        net_energy_j: Mean idle-subtracted energy in joules.
    """

    line: int
    point_id: str
    kind: str
    network: str
    input_shape: tuple[int, ...]
    macs: int
    mem_bytes: int
    kernels: int
    ok: bool
    latency_s: float
    energy_j: float | None
    net_energy_j: float | None

    @property
    def shape(self) -> GemmShape | None:
        """GEMM ``(batches, rows, cols)`` of a conv or linear point (from its parameters), else None."""
        return sweep_gemm_shape(self.point_id, self.input_shape)

    def value(self, metric: str, energy_basis: str = "net") -> float | None:
        """The measured ``latency`` or ``energy`` (``net`` or ``gross``) of this row."""
        if metric == "latency":
            return self.latency_s
        return self.net_energy_j if energy_basis == "net" else self.energy_j


@dataclass(frozen=True)
class SweepData:
    """A parsed sweep CSV.

    Attributes:
        path: The CSV file.
        sha256: Hex digest of its bytes.
        runs: The run headers (board, device, sensor, versions ...), oldest first.
        rows: Every row, flagged ones included.
    """

    path: Path
    sha256: str
    runs: tuple[dict[str, Any], ...]
    rows: tuple[SweepRow, ...]

    @property
    def layer_rows(self) -> list[SweepRow]:
        """Good rows of single layers (the fit's data)."""
        return [r for r in self.rows if r.ok and r.kind != "network"]

    @property
    def network_rows(self) -> list[SweepRow]:
        """Good rows of whole networks (validation data)."""
        return [r for r in self.rows if r.ok and r.kind == "network"]

    @property
    def has_energy(self) -> bool:
        """Whether the sweep measured energy (a power sensor was used)."""
        return any(r.energy_j is not None for r in self.rows if r.ok)

    def header(self, key: str, default: str = "") -> str:
        """A run-header value from the first run (all runs of a CSV share board, device and sensor)."""
        return str(self.runs[0].get(key, default)) if self.runs else default


def _number(text: str, where: str, *, integer: bool = False, optional: bool = False) -> Any:
    if text == "" and optional:
        return None
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise DataError(f"{where}: {text!r} is not a number; fix or remove the row") from None
    if not integer and not math.isfinite(value):
        raise DataError(f"{where}: non-finite value {text!r}; fix or remove the row")
    return value


def _cell(cells: dict[str, str], column: str, where: str, *, optional: bool = False) -> Any:
    return _number(cells[column], f"{where} {column}", optional=optional)


def read_sweep(path: Path) -> SweepData:
    """Parse a sweep CSV written by ``python -m measure sweep``.

    Raises:
        DataError: The file is missing, not a sweep CSV, lacks a column, has a malformed or duplicate
            row, or holds no good row.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        lines = raw.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); give a CSV from python -m measure sweep") from None
    if not lines or lines[0] != MAGIC:
        raise DataError(f"{path}: not a sweep CSV (no {MAGIC!r} line); give one from python -m measure")
    runs = []
    data: list[tuple[int, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        if line.startswith("# run "):
            try:
                runs.append(json.loads(line.split(" ", 3)[3]))
            except (IndexError, ValueError):
                raise DataError(f"{path}:{number}: malformed run header; restore the line") from None
        elif line.strip() and not line.startswith("#"):
            data.append((number, line))
    if not data:
        raise DataError(f"{path}: no rows; run the sweep first")
    header = next(csv.reader([data[0][1]]))
    missing = [c for c in _NEEDED if c not in header]
    if missing:
        raise DataError(f"{path}:{data[0][0]}: no column {missing[0]!r}; is this a measure sweep CSV?")
    rows: list[SweepRow] = []
    seen: dict[str, int] = {}
    for number, line in data[1:]:
        values = next(csv.reader([line]))
        if values == header:
            continue
        where = f"{path}:{number}"
        if len(values) != len(header):
            raise DataError(f"{where}: {len(values)} fields, expected {len(header)}; fix or remove the row")
        cells = dict(zip(header, values, strict=True))
        if cells["point_id"] in seen:
            raise DataError(f"{where}: point {cells['point_id']} also on line {seen[cells['point_id']]}")
        seen[cells["point_id"]] = number
        try:
            shape = tuple(int(d) for d in cells["input_shape"].split("x") if d)
        except ValueError:
            raise DataError(f"{where}: bad input_shape {cells['input_shape']!r}") from None
        ok = cells["status"] == "ok"
        if cells["status"] not in ("ok", "flagged"):
            raise DataError(f"{where}: status {cells['status']!r} is neither ok nor flagged")
        row = SweepRow(
            line=number,
            point_id=cells["point_id"],
            kind=cells["kind"],
            network=cells["network"],
            input_shape=shape,
            macs=_number(cells["macs"] or "0", f"{where} macs", integer=True),
            mem_bytes=_number(cells["mem_bytes"] or "0", f"{where} mem_bytes", integer=True),
            kernels=_number(cells["kernels"] or "0", f"{where} kernels", integer=True),
            ok=ok,
            latency_s=_number(cells["latency_s_median"], f"{where} latency_s_median") if ok else math.nan,
            energy_j=_number(cells["energy_j_median"], f"{where} energy_j_median", optional=True)
            if ok
            else None,
            net_energy_j=(
                _number(cells["net_energy_j_median"], f"{where} net_energy_j_median", optional=True)
                if ok
                else None
            ),
        )
        if ok and row.kind == "network" and not row.network:
            raise DataError(f"{where}: a network row needs a model spec in its network column")
        rows.append(row)
    if not any(r.ok for r in rows):
        raise DataError(f"{path}: no good rows (all flagged or none); check the sensor and rerun")
    return SweepData(path, hashlib.sha256(raw).hexdigest(), tuple(runs), tuple(rows))
