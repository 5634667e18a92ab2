"""Annotate a layer graph with per-layer energy and latency from a board profile."""

from __future__ import annotations

from .board import BoardProfile
from .errors import ConfigError
from .graph import LayerGraph

__all__ = ["annotate"]


def annotate(graph: LayerGraph, profile: BoardProfile, *, allow_placeholders: bool = False) -> LayerGraph:
    """Write ``energy_j`` and ``latency_s`` on every node of ``graph`` (in place) and return it.

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
    nodes = graph.nodes
    for name in graph.order:
        attrs = nodes[name]
        sizes = {"macs": attrs["macs"], "mem_bytes": attrs["mem_bytes"], "kernels": attrs["kernels"]}
        sizes["dispatches"] = attrs.get("dispatches", 1)
        attrs["energy_j"] = profile.energy_j.layer_cost(attrs["kind"], **sizes)
        attrs["latency_s"] = profile.latency_s.layer_cost(attrs["kind"], **sizes)
    graph.board = profile.name
    return graph
