"""The whole-network CSV: the column format of ``shared/data/jetson_published/networks.csv``.

One row per (board, power mode, runtime, precision, unit, batch, model, input size), with a header line
and nothing else, so that the published file and a measured one are read by the same code
(``splitprune calibrate --networks``). Rows are appended one at a time, each by writing the whole file
to a temporary file beside it and renaming it over the old one: a kill leaves the file as it was before
or after the row, never a torn line. A row whose key is already in the file is not measured again
(:func:`done_keys`), so rerunning the same command resumes.

Columns (units in the published README): ``latency_ms`` is per batch, host side; ``gpu_latency_ms`` is
GPU time per batch (CUDA events, or TensorRT's GPU compute time); ``power_w`` the mean power of the
sensor's main rail during the runs; ``idle_power_w`` the settled idle read before them;
``energy_mj_per_image`` is gross, ``power_w x latency_ms / batch`` (idle included).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import SweepError

__all__ = ["COLUMNS", "KEY_COLUMNS", "NetworkCsv", "row_key"]

COLUMNS = (
    "source",
    "board",
    "power_mode",
    "runtime",
    "precision",
    "unit",
    "batch",
    "model",
    "source_model",
    "input_hw",
    "latency_ms",
    "gpu_latency_ms",
    "power_w",
    "idle_power_w",
    "energy_mj_per_image",
    "power_scope",
    "note",
)

# What makes two rows the same measurement: a resumed run skips a row whose key is in the file.
KEY_COLUMNS = ("board", "power_mode", "runtime", "precision", "unit", "batch", "model", "input_hw")


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """The identity of a row (:data:`KEY_COLUMNS` as text)."""
    return tuple(_cell(row.get(column)) for column in KEY_COLUMNS)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class NetworkCsv:
    """A networks CSV opened for resuming: the keys already measured and atomic appends."""

    def __init__(self, path: Path) -> None:
        """Read ``path`` if it exists.

        Raises:
            SweepError: The file exists but its header is not :data:`COLUMNS`.
        """
        self.path = Path(path)
        self._text = ""
        self.done: set[tuple[str, ...]] = set()
        if self.path.exists() and self.path.stat().st_size > 0:
            self._text = self.path.read_text(encoding="utf-8")
            reader = csv.DictReader(io.StringIO(self._text))
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise SweepError(
                    f"{self.path} is not a networks CSV (its header differs from "
                    "shared/data/jetson_published/networks.csv); use another --out"
                )
            self.done = {row_key(row) for row in reader}
            if not self._text.endswith("\n"):
                self._text += "\n"

    def append(self, row: dict[str, Any]) -> None:
        """Add one row: the file is rewritten beside itself and renamed over, so it is never torn."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not self._text:
            writer.writerow(COLUMNS)
        writer.writerow([_cell(row.get(column)) for column in COLUMNS])
        text = self._text + buffer.getvalue()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._text = text
        self.done.add(row_key(row))
