"""Annotate a layer graph with per-layer energy and latency: a thin wrapper over :func:`.pricing.price`."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from .graph import LayerGraph

if TYPE_CHECKING:
    from .board import BoardProfile
    from .deploy import Deployment

__all__ = ["annotate"]


def annotate(
    graph: LayerGraph,
    deployment: Deployment | BoardProfile,
    *,
    allow_placeholders: bool = False,
    boundary: Collection[str] | None = None,
) -> LayerGraph:
    """Write ``energy_j``, ``latency_s`` and ``kernel`` on every node of ``graph`` (in place); return it.

    The costs are :func:`splitprune.pricing.price`'s: ``kernel`` names the node that pays for the GPU
    kernel a node runs in (itself, outside TensorRT), or is None for nodes that launch none;
    ``boundary`` (the device side of a split) keeps TensorRT fusion from crossing the cut.

    Raises:
        ConfigError: A cost table of the profile holds placeholders (``provenance.unmeasured``) and
            ``allow_placeholders`` is false: its zeros must not pass for estimates.
    """
    from .deploy import Deployment
    from .pricing import price, price_placeholders

    deployed = Deployment.coerce(deployment)
    if allow_placeholders:
        costs = price_placeholders(graph, deployed.profile, boundary=boundary)
    else:
        costs = price(graph, deployed, boundary=boundary)
    for name in graph.order:
        attrs = graph.nodes[name]
        attrs["energy_j"], attrs["latency_s"] = costs.energy_j[name], costs.latency_s[name]
        attrs["kernel"] = costs.kernel[name]
    if graph.postprocess is not None:  # a detector's NMS and decoding, after the traced network
        _price_postprocess(graph.postprocess, deployed.profile)
    graph.board = costs.board
    return graph


def _price_postprocess(post: dict, profile: BoardProfile) -> None:
    """Price the post-processing record as one op of the deployed profile (i22t's rule on i21's pricing)."""
    from .pricing import op_costs

    post["energy_j"], post["latency_s"] = op_costs(profile, post)
