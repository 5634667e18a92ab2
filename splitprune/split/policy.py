"""The exact bandwidth policy: the optimal split for every uplink rate in a range.

Every cost is linear in ``lam = 1 / rate``: a placement ``D`` costs ``A(D) + B(D) * lam`` (transfer
time and the ``beta`` part of the radio power scale with ``1 / rate``). Without rate-dependent side
constraints, the optimum over ``lam`` is the lower envelope of these lines, a concave piecewise-linear
function with one optimal placement per piece. We find it exactly by Eisner-Severance bisection:
solve at both ends; if the optimal lines differ, solve where they intersect; if nothing beats them
there, that is a breakpoint, else recurse on both halves with the new line. Each piece costs about two
solves. A memory limit does not depend on the rate and keeps this exact. Deadlines and energy budgets
do (a placement's feasibility changes with the rate); the policy is then a grid refined by bisection
around every change, reported with ``exact=False``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import SplitpruneError
from ..link import LinkProfile
from .problem import Costs
from .result import InfeasibleSplitError
from .solve import SplitOptions, SplitSolver

__all__ = ["BandwidthPolicy", "PolicyPiece", "bandwidth_policy"]

_TOL = 1e-9


@dataclass(frozen=True)
class PolicyPiece:
    """One rate range and its optimal split (objective = intercept + slope / rate).

    Attributes:
        low_bps: Lower end of the range, bit/s.
        high_bps: Upper end of the range, bit/s.
        feasible: False when no split meets the constraints in this range.
        device_nodes: Nodes on the device.
        cut: Names of the tensors sent.
        bytes_sent: Bytes on the wire.
        device_energy_j: Device compute energy, J.
        intercept: Objective as the rate goes to infinity.
        slope: Objective coefficient of ``1 / rate`` (objective units x bit/s).
    """

    low_bps: float
    high_bps: float
    feasible: bool
    device_nodes: tuple[str, ...]
    cut: tuple[str, ...]
    bytes_sent: int
    device_energy_j: float
    intercept: float
    slope: float

    def objective_at(self, rate_bps: float) -> float:
        """Objective of this piece's split at ``rate_bps``."""
        return self.intercept + self.slope / rate_bps

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        row = asdict(self)
        row["device_nodes"], row["cut"] = list(self.device_nodes), list(self.cut)
        return row


@dataclass(frozen=True)
class BandwidthPolicy:
    """The optimal split as a function of the uplink rate.

    Attributes:
        low_bps: Lowest rate, bit/s.
        high_bps: Highest rate, bit/s.
        objective: The objective kind.
        pieces: Rate ranges in ascending order.
        exact: Whether the breakpoints are exact (no deadline or energy budget).
        solves: Number of solver calls.
        solve_time_s: Wall-clock time, s.
        all_local: ``(intercept, slope)`` of running everything on the device.
        full_offload: ``(intercept, slope)`` of sending the raw input.
    """

    low_bps: float
    high_bps: float
    objective: str
    pieces: tuple[PolicyPiece, ...]
    exact: bool
    solves: int
    solve_time_s: float
    all_local: tuple[float, float]
    full_offload: tuple[float, float]

    def piece_at(self, rate_bps: float) -> PolicyPiece:
        """The piece whose range holds ``rate_bps``."""
        for piece in self.pieces:
            if rate_bps <= piece.high_bps:
                return piece
        return self.pieces[-1]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {
            "low_bps": self.low_bps, "high_bps": self.high_bps, "objective": self.objective,
            "exact": self.exact, "solves": self.solves, "solve_time_s": self.solve_time_s,
            "all_local": {"intercept": self.all_local[0], "slope": self.all_local[1]},
            "full_offload": {"intercept": self.full_offload[0], "slope": self.full_offload[1]},
            "pieces": [p.to_dict() for p in self.pieces],
        }


class _Lines:
    """Objective lines ``A + B * lam`` of placements, from costs at lam = 0 and their slope."""

    def __init__(self, solver: SplitSolver, link: LinkProfile, options: SplitOptions) -> None:
        self.solver, self.link, self.options = solver, link, options
        c0, _ = solver.objective_costs(link.figures_at_inverse_rate(0.0), options)
        c1, _ = solver.objective_costs(link.figures_at_inverse_rate(1.0), options)
        self.c0 = c0
        self.dc = Costs(c1.dev - c0.dev, c1.srv - c0.srv, c1.send - c0.send)
        self.solves = 0

    def line(self, x: np.ndarray) -> tuple[float, float]:
        p = self.solver.problem
        xf, sent = x.astype(float), p.sent(x).astype(float)
        return self.c0.value(xf, sent), self.dc.value(xf, sent)

    def best(self, lam: float) -> np.ndarray | None:
        self.solves += 1
        try:
            x, *_ = self.solver.place(self.link.figures_at_inverse_rate(lam), self.options)
        except InfeasibleSplitError:
            return None
        return x


def bandwidth_policy(
    solver: SplitSolver,
    link: LinkProfile,
    low_bps: float,
    high_bps: float,
    *,
    options: SplitOptions | None = None,
    samples: int = 64,
) -> BandwidthPolicy:
    """The optimal split for every rate in ``[low_bps, high_bps]``.

    Args:
        solver: A solver for the problem (re-used across rates).
        link: The link profile (its power model gives the rate dependence).
        low_bps: Lowest rate, bit/s.
        high_bps: Highest rate, bit/s.
        options: Objective and constraints.
        samples: Grid size when the policy cannot be exact (deadline or energy budget).
    """
    if not (0 < low_bps < high_bps and math.isfinite(high_bps)):
        raise SplitpruneError(f"bad bandwidth range {low_bps:g}:{high_bps:g}; give 0 < LOW < HIGH")
    options = options or SplitOptions()
    start = time.perf_counter()
    lines = _Lines(solver, link, options)
    lam_lo, lam_hi = 1.0 / high_bps, 1.0 / low_bps
    exact = options.deadline_s is None and options.energy_budget_j is None
    if exact:
        x_lo, x_hi = lines.best(lam_lo), lines.best(lam_hi)
        if x_lo is None or x_hi is None:
            raise SplitpruneError("no split meets the memory limit at any rate; raise --memory-mb")
        segments = _envelope(lines, lam_lo, x_lo, lam_hi, x_hi)
    else:
        segments = _grid(lines, lam_lo, lam_hi, samples)
    p = solver.problem
    pieces = []
    for lam_a, lam_b, x in reversed(_merge(segments)):  # ascending rate = descending lam
        low, high = 1.0 / lam_b, 1.0 / lam_a
        if x is None:
            pieces.append(PolicyPiece(low, high, False, (), (), 0, 0.0, math.nan, math.nan))
            continue
        a, b = lines.line(x)
        sent = p.sent(x)
        pieces.append(PolicyPiece(
            low, high, True, tuple(p.names[v] for v in np.flatnonzero(x)),
            tuple(p.names[u] for u in np.flatnonzero(sent)), int(p.wire_bytes[sent].sum()),
            float(p.energy_j[x].sum()), a, b,
        ))
    return BandwidthPolicy(
        low_bps=low_bps, high_bps=high_bps, objective=options.objective, pieces=tuple(pieces),
        exact=exact, solves=lines.solves, solve_time_s=time.perf_counter() - start,
        all_local=lines.line(p.all_local()), full_offload=lines.line(p.full_offload()),
    )


def _merge(segments: list) -> list:
    """Join neighbouring segments with the same placement."""
    merged: list = []
    for lam_a, lam_b, x in segments:
        if merged and _same(merged[-1][2], x):
            merged[-1] = (merged[-1][0], lam_b, x)
        else:
            merged.append((lam_a, lam_b, x))
    return merged


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _envelope(lines: _Lines, lo: float, x_lo: np.ndarray, hi: float, x_hi: np.ndarray) -> list:
    """Segments ``(lam_a, lam_b, x)`` of the lower envelope between ``lo`` and ``hi``."""
    a1, b1 = lines.line(x_lo)
    a2, b2 = lines.line(x_hi)
    scale = max(abs(a1), abs(a2), abs(b1) * hi, abs(b2) * hi, 1e-300)
    if np.array_equal(x_lo, x_hi) or (abs(a1 - a2) <= _TOL * scale and abs(b1 - b2) * hi <= _TOL * scale):
        return [(lo, hi, x_lo)]
    if b1 - b2 <= _TOL * scale / hi:  # parallel lines: a tie everywhere; split at the left end
        return [(lo, hi, x_hi)]
    lam = min(max((a2 - a1) / (b1 - b2), lo), hi)
    x_mid = lines.best(lam)
    if x_mid is None:  # pragma: no cover - a memory limit does not depend on the rate
        return [(lo, lam, x_lo), (lam, hi, x_hi)]
    a3, b3 = lines.line(x_mid)
    same = np.array_equal(x_mid, x_lo) or np.array_equal(x_mid, x_hi)
    if same or a3 + b3 * lam >= a1 + b1 * lam - _TOL * scale:
        return [(lo, lam, x_lo), (lam, hi, x_hi)]
    return _envelope(lines, lo, x_lo, lam, x_mid) + _envelope(lines, lam, x_mid, hi, x_hi)


def _grid(lines: _Lines, lo: float, hi: float, samples: int) -> list:
    """Segments from a log grid in lam, with every change located by bisection (rel. 1e-6)."""
    grid = np.geomspace(lo, hi, max(samples, 2))
    xs = [lines.best(float(lam)) for lam in grid]
    same = _same

    segments, start = [], float(grid[0])
    for i in range(len(grid) - 1):
        a, xa, end, x_end = float(grid[i]), xs[i], float(grid[i + 1]), xs[i + 1]
        while not same(xa, x_end):  # find the first change after a, then continue from there
            b, xb = end, x_end
            while b / a - 1 > 1e-6:
                mid = math.sqrt(a * b)
                xm = lines.best(mid)
                if same(xm, xa):
                    a = mid
                else:
                    b, xb = mid, xm
            segments.append((start, b, xa))
            start, a, xa = b, b, xb
    segments.append((start, float(grid[-1]), xs[-1]))
    return segments
