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

    The graph is priced without a cut (for TensorRT: fused as one engine); each piece's placement is
    optimal for that pricing.
    """
    from .policy import bandwidth_policy

    graph = traced(model_or_graph, deployment, example=example, name=name)
    problem = split_problem(graph, deployment, wire=wire, input_wire=input_wire, server=server)
    return bandwidth_policy(SplitSolver(problem), link, low_bps, high_bps, options=options, samples=samples)


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
