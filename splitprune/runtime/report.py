"""What a run reports: the per-request log (JSON lines) and the ``splitprune.run/1`` summary.

The log is streamed: :class:`RunLog` appends one line per completed request and flushes it to the
kernel at once, so ``tail -f`` follows a run and a run killed with ``kill -9`` leaves every completed
request on disk (only the request in flight is lost). Lines are not ``fsync``-ed one by one (a flushed
line survives the death of the process; only a crash of the machine itself could lose the last ones);
the file is ``fsync``-ed when the log is closed.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from ..files import make_directory, write_atomic
from .device import RequestRecord

__all__ = ["RUN_SCHEMA", "RunLog", "RunSummary", "summarize", "write_log"]

RUN_SCHEMA = "splitprune.run/1"


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p95": None}
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95))}


@dataclass(frozen=True)
class RunSummary:
    """A run of requests against a server.

    Attributes:
        model: The model spec.
        connect: The server's address.
        settings: The split settings (board, link, objective, wires, mode, rate range).
        requests: Requests started.
        completed: Requests that returned an output.
        errors: Requests that ended with an error (the device could not compute them), with reasons.
        lost: Requests that ended with neither (should always be 0).
        local_fallbacks: Requests meant for the server that the device finished itself.
        switches: Cut changes the device made.
        splits_used: ``{cut, kind, count}`` per cut requests ran on.
        max_abs_error: Largest absolute difference from the unsplit model on the same inputs (None when
            not checked).
        latency_s: Median and 95th percentile of the measured request time, s.
        predicted_latency_s: The same for the model's prediction of each request's cut at its estimate, s.
        transfer_rate_bps: Median and p95 of the measured transfer rates of offloaded requests, bit/s.
        uplink_estimate_bps: The final estimate and its median over the requests, bit/s.
        batching: Requests served in batches of more than one, and the mean batch size.
        energy_j: Total measured device energy, J (None without a sensor).
        interrupted: Whether the run was stopped (Ctrl-C) before all requests were made.
    """

    model: str
    connect: str
    settings: dict[str, Any]
    requests: int
    completed: int
    errors: dict[str, int]
    lost: int
    local_fallbacks: int
    switches: int
    splits_used: tuple[dict[str, Any], ...]
    max_abs_error: float | None
    latency_s: dict[str, float | None]
    predicted_latency_s: dict[str, float | None]
    transfer_rate_bps: dict[str, float | None]
    uplink_estimate_bps: dict[str, float | None]
    batching: dict[str, float]
    energy_j: float | None
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The ``splitprune run --json`` document (schema ``splitprune.run/1``)."""
        return {
            "schema": RUN_SCHEMA, "model": self.model, "connect": self.connect, "settings": self.settings,
            "requests": self.requests, "completed": self.completed, "errors": dict(self.errors),
            "lost": self.lost, "local_fallbacks": self.local_fallbacks, "switches": self.switches,
            "splits_used": [dict(s) for s in self.splits_used], "max_abs_error": self.max_abs_error,
            "latency_s": self.latency_s, "predicted_latency_s": self.predicted_latency_s,
            "transfer_rate_bps": self.transfer_rate_bps, "uplink_estimate_bps": self.uplink_estimate_bps,
            "batching": self.batching, "energy_j": self.energy_j, "interrupted": self.interrupted,
        }


def summarize(
    records: Sequence[RequestRecord],
    *,
    model: str,
    connect: str,
    settings: dict[str, Any],
    requests: int,
    errors: dict[str, int],
    switches: int,
    final_estimate_bps: float,
    max_abs_error: float | None,
    interrupted: bool = False,
) -> RunSummary:
    """The summary of a run from its records (``requests`` counts those started, errors included)."""
    kinds = {r.cut: r.cut_kind for r in records}
    counts = Counter(r.cut for r in records)
    offloaded = [r for r in records if r.sent_bytes > 0 and r.transfer_s > 0]
    batched = [r for r in records if r.batch > 1]
    energies = [r.energy_j for r in records if r.energy_j is not None]
    served = [r.batch for r in records if r.batch > 0]
    return RunSummary(
        model=model, connect=connect, settings=settings, requests=requests, completed=len(records),
        errors=dict(errors), lost=requests - len(records) - sum(errors.values()),
        local_fallbacks=sum(r.local_fallback for r in records), switches=switches,
        splits_used=tuple({"cut": c, "kind": kinds[c], "count": n} for c, n in counts.most_common()),
        max_abs_error=max_abs_error,
        latency_s=_stats([r.total_s for r in records]),
        predicted_latency_s=_stats([r.predicted_latency_s for r in records]),
        transfer_rate_bps=_stats([8.0 * r.sent_bytes / r.transfer_s for r in offloaded]),
        uplink_estimate_bps={"final": final_estimate_bps,
                             "median": _stats([r.rate_estimate_bps for r in records])["median"]},
        batching={"batched_requests": len(batched),
                  "mean_batch": float(np.mean(served)) if served else 0.0},
        energy_j=float(sum(energies)) if energies else None, interrupted=interrupted,
    )


class RunLog:
    """A JSON-lines request log written as the run goes: one line appended and flushed per request.

    Opening truncates ``path`` (one run per file). Use as a context manager or call :meth:`close`.

    Args:
        path: The log file.

    Raises:
        OutputError: ``path`` cannot be opened for writing.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        make_directory(self.path.parent)
        try:
            self._handle = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise OutputError(f"cannot write --log {self.path} ({exc.strerror or type(exc).__name__}); "
                              "choose a writable path") from None
        self.lines = 0

    def write(self, record: RequestRecord) -> None:
        """Append one request's line and flush it to the kernel (visible to ``tail -f`` at once)."""
        self._handle.write(json.dumps(record.to_dict(), allow_nan=False) + "\n")
        self._handle.flush()
        self.lines += 1

    def close(self) -> None:
        """Flush, ``fsync`` and close (idempotent)."""
        if self._handle.closed:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_log(records: Sequence[RequestRecord], path: Path) -> None:
    """Write one JSON object per request (atomically; :class:`RunLog` streams them instead)."""
    lines = "".join(json.dumps(r.to_dict(), allow_nan=False) + "\n" for r in records)
    write_atomic(Path(path), lines)
