"""The sweep CSV: columns, the run header, append-only writing and resuming.

Layout (readable with the ``csv`` module once ``#`` lines are skipped)::

    # splitprune-measure sweep v1
    # run r1 {"board": ..., "sensor": ..., ...}
    run_id,point_id,op,kind,...
    r1,"conv:bias=false,...",conv,conv,...
    # run r2 {...}            <- appended when the sweep is resumed
    r2,...

Every finished point is one row written with a single ``write`` then flushed and fsynced, so a kill loses
at most the point in flight; a torn last line left by a kill is cut off on resume. Rows never change once
written. ``status`` is ``ok`` or ``flagged`` (bad readings after every retry; ``note`` says why) and
flagged rows are not data. Energies are per inference in joules and empty for time-only sensors;
``net_energy_j_*`` is relative to the settled idle power read before the point (``idle_power_w``).

Columns added after the first H100 sweeps, at the end so that older readers keep working: ``mode``
(``eager`` or ``graph``), ``window_s`` (mean length in seconds of the span the energy was taken over, or
of the window for time-only sensors), ``sample_rate_hz`` (lowest achieved sample rate over the windows),
``idle_settle_s`` (seconds waited for idle power to settle, reading included) and ``idle_settled``
(``true``, or ``false`` when the cap was hit).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import SweepError

__all__ = ["COLUMNS", "MAGIC", "SweepLog", "check_resumable", "collect_environment", "read_rows"]

MAGIC = "# splitprune-measure sweep v1"

COLUMNS = (
    "run_id",
    "point_id",
    "op",
    "kind",
    "network",
    "input_shape",
    "macs",
    "mem_bytes",
    "kernels",
    "reps",
    "copies",
    "windows",
    "samples_min",
    "status",
    "note",
    "latency_s_mean",
    "latency_s_std",
    "latency_s_ci95",
    "latency_s_median",
    "energy_j_mean",
    "energy_j_std",
    "energy_j_ci95",
    "energy_j_median",
    "net_energy_j_mean",
    "net_energy_j_std",
    "net_energy_j_ci95",
    "net_energy_j_median",
    "idle_power_w",
    "mean_power_w",
    # added with execution modes, tick-aligned windows and settled idle (new columns go at the end)
    "mode",
    "window_s",
    "sample_rate_hz",
    "idle_settle_s",
    "idle_settled",
)

HEADER = ",".join(COLUMNS)

# Header keys that must match when a sweep is resumed into an existing CSV.
RESUME_KEYS = ("board", "device", "device_name", "dtype", "batch", "threads", "sensor", "torch", "mode")


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _nvpmodel() -> str:
    try:
        result = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in result.stdout.splitlines():
        if "Power Mode" in line:
            return line.split(":", 1)[-1].strip()
    return ""


def _cpu_model() -> str:
    for line in _read_text(Path("/proc/cpuinfo")).splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def collect_environment(*, device: str, dtype: str, batch: int, sensor: dict[str, str]) -> dict[str, Any]:
    """What the run header records: board, power mode, clocks, software versions, device, sensor.

    Nothing is changed on the machine (clocks and power mode are only read).
    """
    import torch

    board = _read_text(Path("/proc/device-tree/model")).rstrip("\x00") or _cpu_model()
    env: dict[str, Any] = {
        "board": board,
        "hostname": platform.node(),
        "nvpmodel": _nvpmodel() or "not readable",
        "cpu_freq_khz": _read_text(Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "",
        "cudnn": str(torch.backends.cudnn.version() or ""),
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else _cpu_model(),
        "sm_count": torch.cuda.get_device_properties(0).multi_processor_count if device == "cuda" else "",
        "dtype": dtype,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    gpu_freq = sorted(Path("/sys/class/devfreq").glob("*gpu*/cur_freq")) + sorted(
        Path("/sys/class/devfreq").glob("*.gv11b/cur_freq")
    )
    if gpu_freq:
        env["gpu_freq_hz"] = _read_text(gpu_freq[0])
    env.update(sensor)
    return env


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Parse a sweep CSV into (run headers, rows); comment lines are skipped.

    CSVs from older versions of ``measure`` (a prefix of :data:`COLUMNS`) are read with their columns.

    Raises:
        SweepError: The file is not a sweep CSV or a line is malformed.
    """
    text = path.read_text()
    lines = text.splitlines()
    if not lines or lines[0] != MAGIC:
        raise SweepError(f"{path}: not a sweep CSV (first line is not {MAGIC!r}); use another --out")
    runs: list[dict[str, Any]] = []
    data_lines: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        if line.startswith("# run "):
            try:
                _, _, run_id, payload = line.split(" ", 3)
                runs.append({"run_id": run_id, **json.loads(payload)})
            except ValueError:
                raise SweepError(f"{path}:{number}: malformed run header") from None
        elif not line.startswith("#"):
            data_lines.append(line)
    if not data_lines:
        return runs, []
    columns = next(csv.reader([data_lines[0]]))
    if tuple(columns) != COLUMNS[: len(columns)]:
        raise SweepError(f"{path}: columns differ from this version of measure; use a new --out")
    rows = []
    for values in csv.reader(line for line in data_lines if line != data_lines[0]):
        if len(values) != len(columns):
            raise SweepError(f"{path}: a row has {len(values)} fields, not {len(columns)}")
        rows.append(dict(zip(columns, values, strict=True)))
    return runs, rows


def _cut_torn_line(path: Path) -> None:
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)


def check_resumable(path: Path, env: dict[str, Any]) -> list[dict[str, str]]:
    """Check that ``path`` is absent, empty, or a sweep from the same conditions; return its rows.

    A torn last line left by a kill is cut off first.

    Raises:
        SweepError: The file is not a sweep CSV, has other columns, or was measured on another board,
            device, sensor, software version or execution mode.
    """
    if not path.exists() or path.stat().st_size == 0:
        return []
    _cut_torn_line(path)
    runs, rows = read_rows(path)
    data = [line for line in path.read_text().splitlines()[1:] if not line.startswith("#")]
    if data and data[0] != HEADER:
        raise SweepError(f"{path} was written by an older measure with fewer columns; use a new --out")
    for key in RESUME_KEYS:
        if runs and str(runs[0].get(key)) != str(env.get(key)):
            raise SweepError(
                f"{path} was measured with {key}={runs[0].get(key)!r}, this run has "
                f"{env.get(key)!r}; resume under the same conditions or use a new --out"
            )
    return rows


class SweepLog:
    """An open sweep CSV: knows the finished points and appends rows durably."""

    def __init__(self, path: Path, env: dict[str, Any]) -> None:
        """Open (or create) ``path`` for appending and write this run's header.

        Raises:
            SweepError: The file belongs to another board, device, sensor or software version.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = check_resumable(self.path, env)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        runs = [] if fresh else read_rows(self.path)[0]
        self.done = {row["point_id"] for row in rows}
        self.run_id = f"r{len(runs) + 1}"
        has_header = not fresh and HEADER in self.path.read_text().splitlines()
        self._handle = self.path.open("a", encoding="utf-8", newline="")
        header = MAGIC + "\n" if fresh else ""
        header += f"# run {self.run_id} {json.dumps(env, sort_keys=True)}\n"
        if not has_header:
            header += HEADER + "\n"
        self._write(header)

    def _write(self, text: str) -> None:
        self._handle.write(text)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def append(self, row: dict[str, Any]) -> None:
        """Write one finished point as a single line, flushed to disk."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_cell(row.get(column)) for column in COLUMNS])
        self._write(buffer.getvalue())
        self.done.add(str(row["point_id"]))

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
