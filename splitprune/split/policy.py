"""The exact bandwidth policy: the optimal split for every uplink rate in a range.

Every cost is piecewise linear in ``lam = 1 / rate``: transfer time is ``8 b lam`` and the radio
energy ``8 b (a + b' lam)`` on each piece of the link's power model (:mod:`splitprune.link`; the
pieces meet at the edges of the measured rate range). On one piece, a placement ``D`` costs
``A(D) + B(D) * lam`` and, without rate-dependent side constraints, the optimum over ``lam`` is the
lower envelope of these lines, a concave piecewise-linear function with one optimal placement per
range. We split the rate range at the power model's breakpoints and find each piece's envelope
exactly by Eisner-Severance bisection: solve at both ends; if the optimal lines differ, solve where
they intersect; if nothing beats them there, that is a breakpoint, else recurse on both halves with
the new line. Each range costs about two solves. A memory limit does not depend on the rate and keeps
this exact. Deadlines and energy budgets do (a placement's feasibility changes with the rate); the
policy is then a grid refined by bisection around every change, reported with ``exact=False``.
Ranges never straddle an edge of the measured range, so each says whether its power model was
measured (``in_measured_range``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import SplitpruneError
from ..link import LinkProfile
from .problem import Costs, SplitProblem
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
        sent_bytes: Bytes on the wire.
        device_energy_j: Device compute energy, J.
        intercept: Objective of this split extrapolated to an infinite rate on this range's line.
        slope: Objective coefficient of ``1 / rate`` (objective units x bit/s) on this range.
        in_measured_range: Whether the link's power model was measured on these rates.
        split_kind: ``all_local``, ``full_offload`` (only the inputs on the device), ``split`` or
            ``infeasible``.
    """

    low_bps: float
    high_bps: float
    feasible: bool
    device_nodes: tuple[str, ...]
    cut: tuple[str, ...]
    sent_bytes: int
    device_energy_j: float
    intercept: float
    slope: float
    in_measured_range: bool = True
    split_kind: str = "split"

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
        all_local: ``(low_bps, high_bps, intercept, slope)`` of running everything on the device,
            per range of the link's power model.
        full_offload: The same for sending the input.
        measured_rate_bps: ``(low, high)`` rates the link's power model was measured on.
    """

    low_bps: float
    high_bps: float
    objective: str
    pieces: tuple[PolicyPiece, ...]
    exact: bool
    solves: int
    solve_time_s: float
    all_local: tuple[tuple[float, float, float, float], ...]
    full_offload: tuple[tuple[float, float, float, float], ...]
    measured_rate_bps: tuple[float, float] | None = None

    def piece_at(self, rate_bps: float) -> PolicyPiece:
        """The piece whose range holds ``rate_bps``."""
        for piece in self.pieces:
            if rate_bps <= piece.high_bps:
                return piece
        return self.pieces[-1]

    def baseline_at(self, name: str, rate_bps: float) -> float:
        """Objective of ``all_local`` or ``full_offload`` at ``rate_bps``."""
        lines = self.all_local if name == "all_local" else self.full_offload
        row = next((line for line in lines if rate_bps <= line[1]), lines[-1])
        return row[2] + row[3] / rate_bps

    @property
    def out_of_range(self) -> tuple[PolicyPiece, ...]:
        """Pieces at rates the link's power model was not measured on."""
        return tuple(p for p in self.pieces if not p.in_measured_range)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        def lines(rows: tuple[tuple[float, float, float, float], ...]) -> list[dict[str, float]]:
            return [{"low_bps": lo, "high_bps": hi, "intercept": a, "slope": b} for lo, hi, a, b in rows]

        return {
            "low_bps": self.low_bps, "high_bps": self.high_bps, "objective": self.objective,
            "exact": self.exact, "solves": self.solves, "solve_time_s": self.solve_time_s,
            "measured_rate_bps": None if self.measured_rate_bps is None else list(self.measured_rate_bps),
            "all_local": lines(self.all_local), "full_offload": lines(self.full_offload),
            "pieces": [p.to_dict() for p in self.pieces],
        }


class _Lines:
    """Objective lines ``A + B * lam`` of placements on the power-model piece holding ``rate_bps``."""

    def __init__(self, solver: SplitSolver, link: LinkProfile, options: SplitOptions,
                 rate_bps: float) -> None:
        self.solver, self.link, self.options = solver, link, options
        c0, _ = solver.objective_costs(link.figures_at_inverse_rate(0.0, piece_at_bps=rate_bps), options)
        c1, _ = solver.objective_costs(link.figures_at_inverse_rate(1.0, piece_at_bps=rate_bps), options)
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
    edges = [r for r in link.rate_breakpoints_bps() if low_bps < r < high_bps]
    bounds = [low_bps, *edges, high_bps]
    exact = options.deadline_s is None and options.energy_budget_j is None
    p = solver.problem
    pieces: list[PolicyPiece] = []
    baselines: dict[str, list[tuple[float, float, float, float]]] = {"all_local": [], "full_offload": []}
    solves = 0
    span = math.log(high_bps / low_bps)
    for r_lo, r_hi in zip(bounds, bounds[1:], strict=False):  # ascending rate
        mid = math.sqrt(r_lo * r_hi)
        lines = _Lines(solver, link, options, mid)
        lam_lo, lam_hi = 1.0 / r_hi, 1.0 / r_lo
        if exact:
            x_lo, x_hi = lines.best(lam_lo), lines.best(lam_hi)
            if x_lo is None or x_hi is None:
                raise SplitpruneError("no split meets the memory limit at any rate; raise --memory-mb")
            segments = _envelope(lines, lam_lo, x_lo, lam_hi, x_hi)
        else:
            share = max(2, round(samples * math.log(r_hi / r_lo) / span))
            segments = _grid(lines, lam_lo, lam_hi, share)
        solves += lines.solves
        measured = link.in_measured_range(mid)
        for lam_a, lam_b, x in reversed(_merge(segments)):  # ascending rate = descending lam
            low, high = 1.0 / lam_b, 1.0 / lam_a
            if x is None:
                pieces.append(PolicyPiece(low, high, False, (), (), 0, 0.0, math.nan, math.nan, measured,
                                          "infeasible"))
                continue
            a, b = lines.line(x)
            sent = p.sent(x)
            pieces.append(PolicyPiece(
                low, high, True, tuple(p.names[v] for v in np.flatnonzero(x)),
                tuple(p.names[u] for u in np.flatnonzero(sent)), int(p.wire_bytes[sent].sum()),
                float(p.energy_j[x].sum()), a, b, measured, _split_kind(p, x),
            ))
        for name, x in (("all_local", p.all_local()), ("full_offload", p.full_offload())):
            baselines[name].append((r_lo, r_hi, *lines.line(x)))
    return BandwidthPolicy(
        low_bps=low_bps, high_bps=high_bps, objective=options.objective, pieces=tuple(pieces),
        exact=exact, solves=solves, solve_time_s=time.perf_counter() - start,
        all_local=tuple(baselines["all_local"]), full_offload=tuple(baselines["full_offload"]),
        measured_rate_bps=link.uplink.measured_rate_bps,
    )


def _split_kind(problem: SplitProblem, x: np.ndarray) -> str:
    if x.all():
        return "all_local"
    return "full_offload" if int(x.sum()) == len(problem.inputs) else "split"


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
