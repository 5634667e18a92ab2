"""Annotate a layer graph with per-layer energy and latency from a board profile."""

from __future__ import annotations

from collections.abc import Collection

from .board import DISPATCH_ONLY_KINDS, FREE_KINDS, BoardProfile, gemm_shape
from .errors import ConfigError
from .graph import LayerGraph

__all__ = ["annotate"]


def annotate(
    graph: LayerGraph,
    profile: BoardProfile,
    *,
    allow_placeholders: bool = False,
    boundary: Collection[str] | None = None,
) -> LayerGraph:
    """Write ``energy_j``, ``latency_s`` and ``kernel`` on every node of ``graph`` (in place); return it.

    ``kernel`` names the node that pays for the GPU kernel a node runs in (itself, outside TensorRT),
    or is None for nodes that launch none. A profile configured for ``tensorrt``
    (:func:`splitprune.deploy.configure`) prices fused kernels (:mod:`splitprune.fusion`) on their
    anchor nodes; ``boundary`` (the device side of a split) keeps fusion from crossing the cut. The
    profile's ``per_inference`` cost (TensorRT's enqueue) is charged on the first input.

    Raises:
        ConfigError: A cost table of ``profile`` holds placeholders (``provenance.unmeasured``) and
            ``allow_placeholders`` is false: its zeros must not pass for estimates.
    """
    if profile.provenance.unmeasured and not allow_placeholders:
        table = profile.provenance.unmeasured[0]
        raise ConfigError(
            f"board {profile.board.name!r} has no measured {table} table (placeholder zeros); "
            "calibrate it with a power sensor or use a profile that has one"
        )
    if profile.board.runtime == "tensorrt":
        _annotate_fused(graph, profile, boundary)
    else:
        _annotate_per_op(graph, profile)
    if graph.postprocess is not None:  # a detector's NMS and decoding, after the traced network
        post = graph.postprocess
        post["energy_j"], post["latency_s"] = _price(profile, post, mem_bytes=post["mem_bytes"])
    if graph.inputs:
        first = graph.nodes[graph.inputs[0]]
        first["latency_s"] += profile.latency_s.per_inference
        first["energy_j"] += (
            profile.energy_j.per_inference + profile.energy_j.static_power_w * profile.latency_s.per_inference
        )
    graph.board = profile.name
    return graph


def _price(profile: BoardProfile, attrs: dict, *, mem_bytes: int) -> tuple[float, float]:
    sizes = {
        "macs": attrs["macs"],
        "mem_bytes": mem_bytes,
        "kernels": attrs["kernels"],
        "dispatches": attrs.get("dispatches", 1),
        "shape": gemm_shape(attrs["kind"], attrs["output_shapes"]),
    }
    kind = attrs["kind"]
    return profile.energy_j.layer_cost(kind, **sizes), profile.latency_s.layer_cost(kind, **sizes)


def _annotate_per_op(graph: LayerGraph, profile: BoardProfile) -> None:
    for name in graph.order:
        attrs = graph.nodes[name]
        attrs["energy_j"], attrs["latency_s"] = _price(profile, attrs, mem_bytes=attrs["mem_bytes"])
        launches = attrs["kind"] not in FREE_KINDS and attrs["kind"] not in DISPATCH_ONLY_KINDS
        attrs["kernel"] = name if launches else None


def _annotate_fused(graph: LayerGraph, profile: BoardProfile, boundary: Collection[str] | None) -> None:
    from .fusion import fuse

    for name in graph.order:
        attrs = graph.nodes[name]
        attrs["energy_j"] = attrs["latency_s"] = 0.0
        attrs["kernel"] = None
    for anchor, kernel in fuse(graph, boundary=boundary).items():
        attrs = graph.nodes[anchor]
        attrs["energy_j"], attrs["latency_s"] = _price(profile, attrs, mem_bytes=kernel.mem_bytes)
        for member in kernel.members:
            graph.nodes[member]["kernel"] = anchor
