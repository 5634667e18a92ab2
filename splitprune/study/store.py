"""A study's results on disk: one JSON file per job, then Parquet, CSV and a summary of all rows.

Layout of ``--out DIR``::

    DIR/jobs/<job_id>.json    one JobResult per job (written atomically when the job finishes)
    DIR/results.parquet       every row of the study's jobs (pyarrow), in job order
    DIR/results.csv           the same rows
    DIR/summary.md            one line per model and board: jobs, failures, best energy and latency

Resuming is reading: a job whose file exists (and parses) is done; a job killed half-way left no
file (writes are atomic) and runs again. Rows are keyed by job id, so nothing is ever duplicated,
and files of jobs that are no longer in the study are left alone but not tabulated.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import SplitpruneError
from ..files import write_atomic
from .jobs import JobResult, headline
from .spec import Job

__all__ = ["ResultStore", "summary_table"]


class ResultStore:
    """The result files of one study directory.

    Args:
        root: The ``--out`` directory (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, job_id: str) -> Path:
        """Where the result of ``job_id`` lives."""
        return self.root / "jobs" / f"{job_id}.json"

    def load(self, job_id: str) -> JobResult | None:
        """The stored result of ``job_id``, or None when there is none (or it is unreadable)."""
        try:
            return JobResult.from_dict(json.loads(self.path(job_id).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def has(self, job_id: str, *, retry_failed: bool = False) -> bool:
        """Whether ``job_id`` is done: its file parses (and, with ``retry_failed``, it did not fail)."""
        result = self.load(job_id)
        return result is not None and not (retry_failed and result.status == "failed")

    def save(self, result: JobResult) -> None:
        """Write one result atomically."""
        text = json.dumps(result.to_dict(), indent=1, allow_nan=True, default=str)
        write_atomic(self.path(result.job_id), text + "\n")

    def rows(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        """The rows of the jobs that have a result, in job order."""
        out = []
        for job in jobs:
            result = self.load(job.job_id)
            if result is not None:
                out.append(result.row)
        return out

    def write_tables(self, rows: list[dict[str, Any]]) -> dict[str, Path]:
        """Write ``results.parquet``, ``results.csv`` and ``summary.md`` of ``rows``; returns their paths.

        Raises:
            SplitpruneError: pyarrow is not installed.
        """
        try:
            import pyarrow as pa
            import pyarrow.csv as pa_csv
            import pyarrow.parquet as pq
        except ImportError:
            raise SplitpruneError("study results need pyarrow: pip install 'splitprune[study]'") from None
        table = _table(pa, rows)
        paths = {"parquet": self.root / "results.parquet", "csv": self.root / "results.csv",
                 "summary": self.root / "summary.md"}
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_atomic(paths["parquet"], sink.getvalue().to_pybytes())
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer)
        write_atomic(paths["csv"], buffer.getvalue())
        write_atomic(paths["summary"], summary_table(rows))
        return paths


def _table(pa: Any, rows: list[dict[str, Any]]) -> Any:
    """A pyarrow table over the union of the rows' columns (first-seen order); mixed columns as text."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    return pa.table(columns) if columns else pa.table({"job_id": pa.array([], type=pa.string())})


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per model and board, the jobs, their outcomes and the best energy and latency."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row.get("model")), str(row.get("board"))), []).append(row)
    lines = ["| model | board | jobs | ok | infeasible | failed | least energy mJ | least latency ms "
             "| least-energy job |", "|---|---|---|---|---|---|---|---|---|"]
    for (model, board), members in groups.items():
        counts = {s: sum(1 for r in members if r.get("status") == s) for s in ("ok", "infeasible", "failed")}
        ok = [r for r in members if r.get("status") == "ok"]
        energies = [(headline(r)[0], r) for r in ok if not math.isnan(headline(r)[0])]
        latencies = [headline(r)[1] for r in ok if not math.isnan(headline(r)[1])]
        best = min(energies, key=lambda pair: pair[0]) if energies else None
        lines.append(
            f"| {model} | {board} | {len(members)} | {counts['ok']} | {counts['infeasible']} | "
            f"{counts['failed']} | {'' if best is None else f'{best[0] * 1e3:.4g}'} | "
            f"{'' if not latencies else f'{min(latencies) * 1e3:.4g}'} | "
            f"{'' if best is None else _describe(best[1])} |"
        )
    return "\n".join(lines) + "\n"


def _describe(row: dict[str, Any]) -> str:
    parts = [row["job_id"]]
    for key in ("mode", "link", "rate_bps", "objective", "budget"):
        if row.get(key) is not None:
            parts.append(f"{key}={row[key]}")
    return " ".join(parts)
