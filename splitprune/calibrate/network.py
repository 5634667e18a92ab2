"""The network-level term: what a whole network adds per executed op to its isolated layers.

A layer measured alone in a tight loop misses what a network adds around it (module nesting, Python
between ops, caches shared with other layers). ``network_per_op`` adds that as CPU time per executed
op, fitted on a few *training* networks of the sweep (relative least squares in one variable); the
validation report never scores a network the fit saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..board import FREE_KINDS, CostModel, GemmShape, gemm_shape
from ..errors import DataError, SplitpruneError

__all__ = ["NetworkOps", "default_fit_networks", "fit_network_term", "network_ops"]


@dataclass(frozen=True)
class NetworkOps:
    """The executed ops of one traced network.

    Attributes:
        name: Model spec.
        input_shape: Input shape traced.
        ops: ``(kind, macs, mem_bytes, kernels, dispatches, shape)`` of every op that costs something
            (``shape``: its GEMM shape or None).
    """

    name: str
    input_shape: tuple[int, ...]
    ops: tuple[tuple[str, int, int, int, int, GemmShape | None], ...]

    @property
    def total_macs(self) -> int:
        """MACs of the whole network."""
        return sum(op[1] for op in self.ops)

    def cost(self, model: CostModel) -> float:
        """Total latency of the network under the latency table ``model``, eager, one kernel per op.

        For fitting the network term; estimates price through :func:`splitprune.pricing.price`.
        """
        return sum(
            model.latency_cost(k, macs=m, mem_bytes=b, kernels=n, dispatches=d, shape=s)
            for k, m, b, n, d, s in self.ops
        )


@lru_cache(maxsize=64)
def network_ops(spec: str, input_shape: tuple[int, ...]) -> NetworkOps:
    """Trace ``spec`` on the meta device and list its ops.

    Raises:
        DataError: The model cannot be built or traced.
    """
    import torch

    from ..graph import trace
    from ..models import load_model

    try:
        module = load_model(spec, device="meta").module
        graph = trace(module, torch.empty(input_shape, device="meta"))
    except SplitpruneError as exc:
        raise DataError(f"cannot trace {spec} ({exc})") from None
    ops = tuple(
        (
            a["kind"],
            int(a["macs"]),
            int(a["mem_bytes"]),
            int(a["kernels"]),
            int(a["dispatches"]),
            gemm_shape(a["kind"], a["output_shapes"]),
        )
        for a in (graph.nodes[n] for n in graph.order)
        if a["kind"] not in FREE_KINDS
    )
    return NetworkOps(spec, input_shape, ops)


def default_fit_networks(networks: Sequence[NetworkOps]) -> list[str]:
    """The documented default training split: every third network by MACs, largest first (none below 3).

    Stratifying by MACs gives the network term and the granularity choice both compute-bound and
    launch-bound networks to learn from, and leaves two thirds of each kind for validation.
    """
    by_macs = sorted({n.name: n for n in networks}.values(), key=lambda n: (-n.total_macs, n.name))
    return [n.name for n in by_macs[::3]] if len(by_macs) >= 3 else []


def fit_network_term(latency: CostModel, networks: Sequence[tuple[NetworkOps, float]]) -> float:
    """The ``network_per_op`` (seconds) that best fits the measured latencies of ``networks``.

    Minimises the sum of squared relative errors over ``[0, launch_floor["default"]]``: what a network
    adds per op is Python around the op, never more than dispatching a typical op itself (without the
    bound, one network that the layers miss for another reason, such as SqueezeNet's max-pools on a
    CPU, would charge every op of every network for it). 0 when no network is given.
    """
    if not networks:
        return 0.0
    from scipy.optimize import minimize_scalar

    def loss(per_op: float) -> float:
        model = latency.model_copy(update={"network_per_op": per_op})
        return float(sum((net.cost(model) / measured - 1.0) ** 2 for net, measured in networks))

    upper = latency.launch_floor.get("default", 0.0)
    if upper <= 0.0:
        return 0.0
    grid = np.linspace(0.0, upper, 41)
    best = float(grid[int(np.argmin([loss(v) for v in grid]))])
    step = upper / 40
    result = minimize_scalar(loss, bounds=(max(0.0, best - step), best + step), method="bounded")
    return float(result.x) if result.fun <= loss(best) else best
