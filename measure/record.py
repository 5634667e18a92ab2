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
flagged rows are not data. Energies are per inference in joules and empty for time-only sensors.
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

__all__ = ["COLUMNS", "MAGIC", "SweepLog", "collect_environment", "read_rows"]

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
)

HEADER = ",".join(COLUMNS)

# Header keys that must match when a sweep is resumed into an existing CSV.
RESUME_KEYS = ("board", "device", "device_name", "dtype", "batch", "threads", "sensor", "torch")


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
    if data_lines[0] != HEADER:
        raise SweepError(f"{path}: columns differ from this version of measure; use a new --out")
    rows = []
    for values in csv.reader(line for line in data_lines if line != HEADER):
        if len(values) != len(COLUMNS):
            raise SweepError(f"{path}: a row has {len(values)} fields, not {len(COLUMNS)}")
        rows.append(dict(zip(COLUMNS, values, strict=True)))
    return runs, rows


class SweepLog:
    """An open sweep CSV: knows the finished points and appends rows durably."""

    def __init__(self, path: Path, env: dict[str, Any]) -> None:
        """Open (or create) ``path`` for appending and write this run's header.

        Raises:
            SweepError: The file belongs to another board, device, sensor or software version.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        runs: list[dict[str, Any]] = []
        rows: list[dict[str, str]] = []
        if self.path.exists() and self.path.stat().st_size > 0:
            self._cut_torn_line()
            runs, rows = read_rows(self.path)
            for key in RESUME_KEYS:
                if runs and str(runs[0].get(key)) != str(env.get(key)):
                    raise SweepError(
                        f"{self.path} was measured with {key}={runs[0].get(key)!r}, this run has "
                        f"{env.get(key)!r}; resume under the same conditions or use a new --out"
                    )
        self.done = {row["point_id"] for row in rows}
        self.run_id = f"r{len(runs) + 1}"
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        has_header = not fresh and HEADER in self.path.read_text().splitlines()
        self._handle = self.path.open("a", encoding="utf-8", newline="")
        header = MAGIC + "\n" if fresh else ""
        header += f"# run {self.run_id} {json.dumps(env, sort_keys=True)}\n"
        if not has_header:
            header += HEADER + "\n"
        self._write(header)

    def _cut_torn_line(self) -> None:
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        with self.path.open("r+b") as handle:
            handle.truncate(keep)

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
