"""The one pricing path: :func:`price` turns a traced graph and a :class:`~.deploy.Deployment` into costs.

Two steps, both behind :func:`price`:

1. **Coefficients of the deployment**: :func:`splitprune.scaling.deployed_profile` scales the fitted
   cost tables to the deployment's runtime, precision, clocks and launch method, each coefficient by
   the resources listed for it in :data:`splitprune.scaling.SCALES` (GPU clock x SMs, EMC clock, CPU
   clock, bytes per element, MAC rate per precision, GPU voltage squared).
2. **Costs of the graph** (:func:`price`). Outside TensorRT every op is its own kernel; in TensorRT
   kernels fuse (:mod:`splitprune.fusion`) and a fused kernel is priced on its anchor. Latency and
   energy are two explicit formulas (:meth:`~.board.CostModel.latency_cost`,
   :meth:`~.board.CostModel.energy_cost`: static power times the op's latency plus its work); the
   per-inference cost (TensorRT's enqueue) is charged on the first input.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .board import (
    DISPATCH_ONLY_KINDS,
    FREE_KINDS,
    BoardProfile,
    CostModel,
    GemmShape,
    gemm_shape,
)
from .errors import ConfigError
from .scaling import SCALES as SCALES
from .scaling import deployed_profile as deployed_profile
from .scaling import resource_factors as resource_factors

if TYPE_CHECKING:
    from .deploy import Deployment
    from .graph import LayerGraph

__all__ = [
    "SCALES", "MetricPricer", "NodeCosts", "deployed_profile", "op_costs", "price", "resource_factors",
]


@dataclass(frozen=True)
class NodeCosts:
    """What one deployment costs per node of a graph.

    Attributes:
        energy_j: Device energy of every node, J (fused members cost 0; the anchor pays).
        latency_s: Device latency of every node, s.
        kernel: The node that pays for the GPU kernel each node runs in, None where none runs.
        board: The deployed profile's name.
        postprocess: ``(energy_j, latency_s)`` of the graph's post-processing record (a detector's
            decoding and NMS, outside the nodes), None where the graph has none.
    """

    energy_j: Mapping[str, float]
    latency_s: Mapping[str, float]
    kernel: Mapping[str, str | None]
    board: str
    postprocess: tuple[float, float] | None = None

    @property
    def total_energy_j(self) -> float:
        """Energy of one pass over the whole graph, J."""
        return float(sum(self.energy_j.values()))

    @property
    def total_latency_s(self) -> float:
        """Latency of one pass over the whole graph, s."""
        return float(sum(self.latency_s.values()))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {"board": self.board, "energy_j": dict(self.energy_j), "latency_s": dict(self.latency_s),
                "kernel": dict(self.kernel)}


def op_costs(tables: Any, attrs: Mapping[str, Any], *, mem_bytes: int | None = None) -> tuple[float, float]:
    """``(energy_j, latency_s)`` of one op (graph node attributes) under ``tables``'s two cost tables.

    ``tables`` is anything with ``energy_j`` and ``latency_s`` :class:`~.board.CostModel` s (a board's
    deployed profile, a server profile); ``mem_bytes`` overrides the node's own (a fused kernel's).
    """
    kind = attrs["kind"]
    sizes = {
        "macs": attrs["macs"],
        "mem_bytes": attrs["mem_bytes"] if mem_bytes is None else mem_bytes,
        "kernels": attrs["kernels"],
        "dispatches": attrs.get("dispatches", 1),
        "shape": gemm_shape(kind, attrs.get("output_shapes", [])),
    }
    return _sized_costs(tables, kind, sizes)


def _sized_costs(tables: Any, kind: str, sizes: Mapping[str, Any]) -> tuple[float, float]:
    """``(energy_j, latency_s)`` of one op of ``kind`` and these sizes: energy over the op's latency."""
    latency = tables.latency_s.latency_cost(kind, **sizes)
    return tables.energy_j.energy_cost(kind, latency_s=latency, **sizes), latency


def _per_inference_costs(profile: BoardProfile) -> tuple[float, float]:
    """``(energy_j, latency_s)`` charged once per inference (TensorRT's enqueue, eager host time)."""
    seconds = profile.latency_s.per_inference
    return profile.energy_j.per_inference + profile.energy_j.static_power_w * seconds, seconds


@dataclass(frozen=True)
class MetricPricer:
    """One metric of :func:`price` for single ops at any size (the pruner's channel model).

    Attributes:
        profile: The deployed profile.
        metric: ``energy_j`` or ``latency_s``.
    """

    profile: BoardProfile
    metric: str = "energy_j"

    @classmethod
    def of(cls, board: Deployment | BoardProfile, metric: str = "energy_j") -> MetricPricer:
        """The pricer of ``metric`` for a deployment (a bare profile is deployed as it is)."""
        from .deploy import Deployment

        if metric not in ("energy_j", "latency_s"):
            raise ValueError(f"metric must be energy_j or latency_s, got {metric!r}")
        return cls(Deployment.coerce(board).profile, metric)

    @property
    def fused(self) -> bool:
        """Whether kernels fuse (TensorRT): fused members cost nothing, the anchor pays the kernel."""
        return self.profile.board.runtime == "tensorrt"

    @property
    def conv_kernel_granularity(self) -> int:
        """The board's kernel tile, in output channels."""
        return self.table.conv_kernel_granularity

    @property
    def table(self) -> CostModel:
        """The cost table of the metric."""
        return self.profile.energy_j if self.metric == "energy_j" else self.profile.latency_s

    @property
    def per_inference(self) -> float:
        """The per-inference cost (TensorRT's enqueue) in the metric's unit, charged once."""
        energy_j, latency_s = _per_inference_costs(self.profile)
        return latency_s if self.metric == "latency_s" else energy_j

    def __call__(
        self, kind: str, *, macs: int, mem_bytes: int, kernels: int = 0, dispatches: int = 1,
        shape: GemmShape | None = None,
    ) -> float:
        """The metric of one op (kernel) of these sizes."""
        sizes: dict[str, Any] = {"macs": macs, "mem_bytes": mem_bytes, "kernels": kernels,
                                 "dispatches": dispatches, "shape": shape}
        if self.metric == "latency_s":
            return self.profile.latency_s.latency_cost(kind, **sizes)
        return _sized_costs(self.profile, kind, sizes)[0]


def price(graph: LayerGraph, deployment: Deployment | BoardProfile, *, boundary: Collection[str] | None = None
          ) -> NodeCosts:
    """Costs of every node of ``graph`` deployed as ``deployment`` (the graph is not modified).

    Args:
        graph: A traced graph (at the deployment's batch size: tracing fixes the shapes).
        deployment: The deployment (a bare profile is deployed as it is).
        boundary: The device side of a split: TensorRT builds two engines, no kernel spans the cut.

    Raises:
        ConfigError: A cost table holds placeholders (``provenance.unmeasured``).
    """
    from .deploy import Deployment

    profile = Deployment.coerce(deployment).profile
    if profile.provenance.unmeasured:
        table = profile.provenance.unmeasured[0]
        raise ConfigError(
            f"board {profile.board.name!r} has no measured {table} table (placeholder zeros); "
            "calibrate it with a power sensor or use a profile that has one"
        )
    return _price(graph, profile, boundary)


def price_placeholders(
    graph: LayerGraph, profile: BoardProfile, *, boundary: Collection[str] | None = None
) -> NodeCosts:
    """:func:`price` that accepts placeholder tables (their zeros stay zeros); for calibration reports."""
    return _price(graph, profile, boundary)


def _price(graph: LayerGraph, profile: BoardProfile, boundary: Collection[str] | None) -> NodeCosts:
    nodes = graph.nodes
    energy = dict.fromkeys(graph.order, 0.0)
    latency = dict.fromkeys(graph.order, 0.0)
    kernel: dict[str, str | None] = dict.fromkeys(graph.order)
    if profile.board.runtime == "tensorrt":
        from .fusion import fuse

        for anchor, fused in fuse(graph, boundary=boundary).items():
            energy[anchor], latency[anchor] = op_costs(profile, nodes[anchor], mem_bytes=fused.mem_bytes)
            for member in fused.members:
                kernel[member] = anchor
    else:
        for name in graph.order:
            attrs = nodes[name]
            energy[name], latency[name] = op_costs(profile, attrs)
            launches = attrs["kind"] not in FREE_KINDS and attrs["kind"] not in DISPATCH_ONLY_KINDS
            kernel[name] = name if launches else None
    if graph.inputs:
        first = graph.inputs[0]
        enqueue_j, enqueue_s = _per_inference_costs(profile)
        latency[first] += enqueue_s
        energy[first] += enqueue_j
    post = op_costs(profile, graph.postprocess) if graph.postprocess is not None else None
    return NodeCosts(energy, latency, kernel, profile.name, post)
