"""The split of a deployed model: the one place a priced graph becomes a :class:`SplitProblem` and a result.

:func:`split_model` is what every entry point calls (``splitprune split``, studies, ``plan``,
``serve``/``run``): it traces the model at the deployment's batch size when given one, prices it
(:func:`splitprune.pricing.price`), builds the problem (:func:`split_problem`) and solves it. It owns
three rules that used to differ by entry point:

- **Wire default.** Intermediate tensors travel in the deployment's precision unless ``wire`` says
  otherwise (an fp16 engine sends fp16 activations); the input travels as ``uint8`` images.
- **TensorRT across the cut.** A cut between fused nodes breaks the fusion on both sides (two
  engines are built), so the graph is re-priced with the cut as fusion boundary and re-solved until
  the placement settles (at most :data:`FIXED_POINT_ROUNDS` rounds).
- **Server.** A server profile prices the server side with the same formulas; without one the server
  is free.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import SplitpruneError
from .problem import SplitProblem
from .result import SplitResult
from .solve import SplitOptions, SplitSolver
from .wire import InputWire, WireFormat

if TYPE_CHECKING:
    import torch

    from ..board import BoardProfile
    from ..deploy import Deployment
    from ..graph import LayerGraph
    from ..link import LinkProfile
    from .policy import BandwidthPolicy

__all__ = [
    "FIXED_POINT_ROUNDS", "DeployedSplit", "split_graph", "split_model", "split_policy", "split_problem",
]

FIXED_POINT_ROUNDS = 3
"""Re-price/re-solve rounds of a TensorRT split (the placement settles in one or two in practice)."""


def default_wire(deployment: Deployment | BoardProfile | None, wire: str | WireFormat | None) -> WireFormat:
    """``wire``, or the deployment's precision when None."""
    from ..deploy import Deployment

    if isinstance(wire, WireFormat):
        return wire
    if wire is None and deployment is None:
        raise SplitpruneError("give the wire format of a graph priced elsewhere")
    if wire is None and isinstance(deployment, Deployment):
        return WireFormat.parse(deployment.precision)
    return WireFormat.parse(wire or deployment.board.precision)  # type: ignore[union-attr]


def split_problem(
    graph: LayerGraph,
    deployment: Deployment | BoardProfile | None,
    *,
    wire: str | WireFormat | None = None,
    input_wire: str | InputWire = "uint8",
    server: Any = None,
    boundary: Collection[str] | None = None,
) -> SplitProblem:
    """The split problem of ``graph`` deployed as ``deployment`` (the graph is annotated in place).

    Args:
        graph: A traced graph.
        deployment: How the device runs it; None for a graph already priced (``annotate``), whose
            ``wire`` must then be given.
        wire: Wire format of intermediate tensors (None: the deployment's precision).
        input_wire: Wire format of the graph's input.
        server: A :class:`~splitprune.link.ServerProfile` (None: a free server).
        boundary: Device nodes of a cut that TensorRT fusion must not cross.
    """
    from ..deploy import Deployment
    from ..energy import annotate

    if deployment is not None:
        deployment = Deployment.coerce(deployment)
        annotate(graph, deployment, boundary=boundary)
    fmt = default_wire(deployment, wire)
    fmt_in = input_wire if isinstance(input_wire, InputWire) else InputWire.parse(input_wire)
    return SplitProblem.from_digraph(
        graph.nx, graph.order, inputs=graph.inputs, output=graph.output, wire=fmt, input_wire=fmt_in,
        server=server,
    )


@dataclass(frozen=True)
class DeployedSplit:
    """A solved split and what produced it (for exports, plots and policy sweeps).

    Attributes:
        result: The optimal split.
        graph: The graph, annotated as priced for the final placement.
        solver: The solver of the final problem (re-usable for other rates).
        deployment: The deployment priced.
    """

    result: SplitResult
    graph: LayerGraph
    solver: SplitSolver
    deployment: Deployment


def split_graph(
    graph: LayerGraph,
    deployment: Deployment | BoardProfile,
    link: LinkProfile,
    *,
    options: SplitOptions | None = None,
    server: Any = None,
    wire: str | WireFormat | None = None,
    input_wire: str | InputWire = "uint8",
    rate_bps: float | None = None,
    name: str | None = None,
) -> DeployedSplit:
    """Optimal split of a traced ``graph`` deployed as ``deployment`` (see the module docstring).

    Raises:
        InfeasibleSplitError: The constraints cannot be met (names the binding one).
        SplitpruneError: A bad rate or deployment.
    """
    from ..deploy import Deployment

    deployed = Deployment.coerce(deployment)
    options = options or SplitOptions()
    try:
        figures = link.figures(rate_bps)
    except ValueError as exc:
        raise SplitpruneError(f"bad --rate-bps: {exc}") from None
    problem = split_problem(graph, deployed, wire=wire, input_wire=input_wire, server=server)
    solver = SplitSolver(problem)
    result = solver.solve(figures, options)
    for _ in range(FIXED_POINT_ROUNDS if deployed.mode == "tensorrt" else 0):
        problem = split_problem(graph, deployed, wire=wire, input_wire=input_wire, server=server,
                                boundary=result.device_nodes)
        solver = SplitSolver(problem)
        again = solver.solve(figures, options)
        settled = set(again.device_nodes) == set(result.device_nodes)
        result = again
        if settled:
            break
    result = replace(result, model=name or graph.name, board=graph.board, link_name=link.name,
                     server=None if server is None else server.name)
    return DeployedSplit(result, graph, solver, deployed)


def split_model(
    model_or_graph: LayerGraph | torch.nn.Module | str,
    deployment: Deployment | BoardProfile,
    link: LinkProfile,
    *,
    options: SplitOptions | None = None,
    server: Any = None,
    wire: str | WireFormat | None = None,
    input_wire: str | InputWire = "uint8",
    rate_bps: float | None = None,
    example: torch.Tensor | None = None,
    name: str | None = None,
) -> SplitResult:
    """Optimal device/server split of a model deployed as ``deployment`` over ``link``.

    Args:
        model_or_graph: A traced :class:`~splitprune.graph.LayerGraph`, a module, or a model spec
            (``torchvision:NAME``, ``package.module:fn``, ``file.py:fn``).
        deployment: How the device runs it (:class:`~splitprune.deploy.Deployment`).
        link: The link profile.
        options: Objective and constraints (default: minimise device energy).
        server: A :class:`~splitprune.link.ServerProfile` (default: a free server).
        wire: Wire format of intermediate tensors (default: the deployment's precision).
        input_wire: Wire format of the input (``uint8``, ``fp16``, ``fp32``, ``jpeg:Q`` or bytes).
        rate_bps: Uplink rate overriding the link's, bit/s.
        example: An example input for a module (default: a meta tensor of the model's input shape).
        name: Model name for the result.

    Raises:
        InfeasibleSplitError: The constraints cannot be met (names the binding one).
    """
    graph = traced(model_or_graph, deployment, example=example, name=name)
    return split_graph(graph, deployment, link, options=options, server=server, wire=wire,
                       input_wire=input_wire, rate_bps=rate_bps, name=name).result


def split_policy(
    model_or_graph: LayerGraph | torch.nn.Module | str,
    deployment: Deployment | BoardProfile,
    link: LinkProfile,
    low_bps: float,
    high_bps: float,
    *,
    samples: int = 64,
    options: SplitOptions | None = None,
    server: Any = None,
    wire: str | WireFormat | None = None,
    input_wire: str | InputWire = "uint8",
    example: torch.Tensor | None = None,
    name: str | None = None,
) -> BandwidthPolicy:
    """The optimal split of a deployed model for every rate in ``[low_bps, high_bps]``.

    Eager and CUDA-graph deployments are priced once, without a cut. A TensorRT deployment is priced
    as :func:`split_graph` prices it at one rate: the policy of the graph fused as one engine gives a
    placement per range; each range is then re-priced with that placement as the fusion boundary and
    its policy re-solved, range by range, until the placement settles (at most
    :data:`FIXED_POINT_ROUNDS` rounds, as :func:`split_graph`). Every piece thus holds the cut that
    :func:`split_model` returns at a rate inside it, with the energies and bytes of that cut priced
    with its boundary (two engines). The graph is left annotated without a cut.
    """
    from ..deploy import Deployment
    from .policy import bandwidth_policy

    deployed = Deployment.coerce(deployment)
    graph = traced(model_or_graph, deployed, example=example, name=name)
    problem = split_problem(graph, deployed, wire=wire, input_wire=input_wire, server=server)
    fused = bandwidth_policy(SplitSolver(problem), link, low_bps, high_bps, options=options, samples=samples)
    if deployed.mode != "tensorrt":
        return fused

    def policy_at(boundary: tuple[str, ...], low: float, high: float) -> BandwidthPolicy:
        again = split_problem(graph, deployed, wire=wire, input_wire=input_wire, server=server,
                              boundary=boundary)
        return bandwidth_policy(SplitSolver(again), link, low, high, options=options, samples=samples)

    policies = [fused]
    pieces = [p for piece in fused.pieces for p in _settle(piece, 1, policy_at, policies)]
    split_problem(graph, deployed, wire=wire, input_wire=input_wire, server=server)  # as priced before
    return replace(
        fused, pieces=tuple(_merge_pieces(pieces)), exact=all(p.exact for p in policies),
        solves=sum(p.solves for p in policies), solve_time_s=sum(p.solve_time_s for p in policies),
    )


def _settle(piece: Any, rounds: int, policy_at: Any, policies: list[Any]) -> list[Any]:
    """The pieces of ``piece``'s range once each placement is re-priced with itself as the boundary.

    Mirrors :func:`split_graph`: round ``k`` prices the previous round's placement as the fusion
    boundary and re-solves; a range whose placement comes back unchanged (or whose last round is
    spent) is final, with the figures of that round's pricing.
    """
    if not piece.feasible or not piece.high_bps > piece.low_bps * (1 + 1e-12):
        return [piece]
    policy = policy_at(piece.device_nodes, piece.low_bps, piece.high_bps)
    policies.append(policy)
    out = []
    wide = [sub for sub in policy.pieces if sub.high_bps > sub.low_bps * (1 + 1e-9)]  # ties at the ends
    for sub in wide or policy.pieces:
        settled = set(sub.device_nodes) == set(piece.device_nodes)
        if not sub.feasible or settled or rounds >= FIXED_POINT_ROUNDS:
            out.append(sub)
        else:
            out.extend(_settle(sub, rounds + 1, policy_at, policies))
    return out


def _merge_pieces(pieces: list[Any]) -> list[Any]:
    """Join neighbouring pieces with the same placement and the same objective line."""
    merged: list[Any] = []
    for piece in pieces:
        last = merged[-1] if merged else None
        same = last is not None and (last.device_nodes, last.in_measured_range) == (
            piece.device_nodes, piece.in_measured_range)
        if (last is not None and same and last.feasible and piece.feasible
                and math.isclose(last.intercept, piece.intercept, rel_tol=1e-12, abs_tol=0.0)
                and math.isclose(last.slope, piece.slope, rel_tol=1e-12, abs_tol=0.0)):
            merged[-1] = replace(last, high_bps=piece.high_bps)
        else:
            merged.append(piece)
    return merged


def traced(
    model_or_graph: LayerGraph | torch.nn.Module | str,
    deployment: Deployment | BoardProfile,
    *,
    example: torch.Tensor | None = None,
    name: str | None = None,
) -> LayerGraph:
    """``model_or_graph`` as a graph traced at the deployment's batch size (a graph is returned as is)."""
    from ..deploy import Deployment
    from ..graph import LayerGraph, trace

    if isinstance(model_or_graph, LayerGraph):
        return model_or_graph
    import torch

    deployed = Deployment.coerce(deployment)
    if isinstance(model_or_graph, str):
        from ..models import load_model

        loaded = load_model(model_or_graph, device="meta")
        module, shape, label = loaded.module, loaded.input_shape, name or model_or_graph
    else:
        module, label = model_or_graph, name or type(model_or_graph).__name__
        if example is None:
            raise SplitpruneError("give an example input with a module (or a model spec)")
        shape = tuple(example.shape)
    if example is None:
        example = torch.empty(deployed.input_shape(shape), device="meta")
    elif tuple(example.shape) != deployed.input_shape(shape):
        example = torch.empty(deployed.input_shape(shape), dtype=example.dtype, device=example.device)
    return trace(module, example, name=label)
