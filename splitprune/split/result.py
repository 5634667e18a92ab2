"""Result types of the split solver, each with ``to_dict()`` for ``--json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import SplitpruneError
from ..link import LinkFigures
from .problem import Evaluation

__all__ = ["CutTensor", "InfeasibleSplitError", "SplitResult"]

SCHEMA = "splitprune.split/2"  # 2: one vocabulary with estimate/prune; link figures under "link"


class InfeasibleSplitError(SplitpruneError):
    """No placement meets the side constraints.

    Attributes:
        constraint: The binding constraint: ``deadline``, ``energy`` or ``memory``.
        limit: Its limit (s, J or bytes).
        best: The best value of that quantity any placement achieves under the other constraints.
        others: The other constraints that were active when ``best`` was computed.
    """

    _WHAT = {
        "deadline": ("deadline", "the fastest split takes", "--deadline-ms", 1e3, "ms"),
        "energy": ("device energy budget", "the most frugal split uses", "--energy-budget-mj", 1e3,
                   "mJ"),
        "memory": ("device memory limit", "the smallest head needs", "--memory-mb", 1e-6, "MB"),
    }

    def __init__(self, constraint: str, limit: float, best: float, others: tuple[str, ...] = ()) -> None:
        self.constraint, self.limit, self.best, self.others = constraint, limit, best, others
        what, best_text, flag, factor, unit = self._WHAT[constraint]
        under = f" while meeting the {' and '.join(others)} constraint" if others else ""
        super().__init__(
            f"no split meets the {what} of {limit * factor:.6g} {unit}: {best_text} "
            f"{best * factor:.6g} {unit}{under}; relax {flag} to at least {best * factor:.6g}"
        )


@dataclass(frozen=True)
class CutTensor:
    """One tensor that crosses from the device to the server.

    Attributes:
        name: Producing node.
        kind: Its layer kind.
        output_shapes: Output shapes.
        dtype: Native dtype.
        out_bytes: Native bytes.
        wire_bytes: Bytes on the wire (after the wire format).
        consumers: Server-side nodes that read it.
    """

    name: str
    kind: str
    output_shapes: tuple[tuple[int, ...], ...]
    dtype: str
    out_bytes: int
    wire_bytes: int
    consumers: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        row = asdict(self)
        row["output_shapes"] = [list(s) for s in self.output_shapes]
        row["consumers"] = list(self.consumers)
        return row


@dataclass(frozen=True)
class SplitResult:
    """The optimal split and everything needed to re-derive it.

    Attributes:
        objective: ``energy``, ``latency`` or ``weighted``.
        objective_value: The optimum (J, s, or a unitless weighted sum).
        weights: Coefficients of the objective per J and per s (``energy_per_j``, ``latency_per_s``).
        device_nodes: Names of the nodes on the device, in order.
        cut: The tensors that cross.
        metrics: The split's energy, latency, bytes and memory.
        all_local: The same for running everything on the device.
        full_offload: The same for sending the raw input.
        link: Effective link figures at the rate used.
        solver: Which solver produced the placement.
        status: Solver status (``optimal``).
        solve_time_s: Wall-clock solve time, s.
        constraints: Active side constraints and their limits (s, J, bytes).
        nodes: Per-node rows (name, kind, placement, costs, native and wire bytes, inputs).
        cross_check: Objective of the independent min-cut, when it was run.
        wire: Wire format of intermediate tensors.
        input_wire: Wire format of the graph's input.
        model: Model name; board, link_name, server: profile names.
    """

    objective: str
    objective_value: float
    weights: dict[str, float]
    device_nodes: tuple[str, ...]
    cut: tuple[CutTensor, ...]
    metrics: Evaluation
    all_local: Evaluation
    full_offload: Evaluation
    link: LinkFigures
    solver: str
    status: str
    solve_time_s: float
    constraints: dict[str, float]
    nodes: tuple[dict[str, Any], ...]
    cross_check: float | None = None
    wire: str = "fp32"
    input_wire: str = "fp32"
    model: str = ""
    board: str | None = None
    link_name: str | None = None
    server: str | None = None

    def savings(self, baseline: Evaluation) -> dict[str, float]:
        """Energy and latency saved against ``baseline`` (absolute and as a fraction)."""
        de = baseline.total_energy_j - self.metrics.total_energy_j
        dl = baseline.latency_s - self.metrics.latency_s
        return {
            "energy_j": de,
            "energy_fraction": de / baseline.total_energy_j if baseline.total_energy_j else 0.0,
            "latency_s": dl,
            "latency_fraction": dl / baseline.latency_s if baseline.latency_s else 0.0,
        }

    @property
    def sent_bytes(self) -> int:
        """Bytes on the wire."""
        return self.metrics.sent_bytes

    def to_dict(self) -> dict[str, Any]:
        """The ``splitprune split --json`` document (schema ``splitprune.split/2``).

        The link's name and figures at the rate used (``rate_bps``, ``power_w``,
        ``measured_rate_bps``, ``in_measured_range``, per-byte and per-message costs) sit under
        ``link``; node rows name their predecessors ``inputs`` as ``estimate`` does.
        """
        return {
            "schema": SCHEMA,
            "model": self.model,
            "board": self.board,
            "server": self.server,
            "link": {"name": self.link_name, **self.link.to_dict()},
            "wire": self.wire,
            "input_wire": self.input_wire,
            "objective": self.objective,
            "objective_value": self.objective_value,
            "weights": dict(self.weights),
            "constraints": dict(self.constraints),
            "solver": self.solver,
            "status": self.status,
            "solve_time_s": self.solve_time_s,
            "cross_check_objective_value": self.cross_check,
            "sent_bytes": self.metrics.sent_bytes,
            "device_nodes": list(self.device_nodes),
            "cut": [c.to_dict() for c in self.cut],
            "metrics": self.metrics.to_dict(),
            "all_local": self.all_local.to_dict(),
            "full_offload": self.full_offload.to_dict(),
            "savings_vs_all_local": self.savings(self.all_local),
            "savings_vs_full_offload": self.savings(self.full_offload),
            "nodes": [dict(row) for row in self.nodes],
        }
