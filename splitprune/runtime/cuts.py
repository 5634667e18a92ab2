"""What device and server agree on: the model, its bandwidth policy and the cuts the policy chooses.

:func:`prepare` builds the model (seeded, so both sides build the same weights), traces and annotates
it, computes the exact bandwidth policy over a rate range with :func:`splitprune.split.split_policy`
(the ``split --sweep-bandwidth`` machinery; TensorRT cuts priced with their boundary) and turns the
policy's distinct placements into :class:`Cut` s. Device and server compute this independently from
the same :class:`SplitSettings`; the ``model_id`` (a hash of the spec, the input shape and every
weight) and the ``cut_id`` s (a hash of the device nodes) let the server refuse a device that disagrees.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from ..errors import SplitpruneError
from ..export import SplitModules, split_modules

__all__ = ["Cut", "SplitModel", "SplitSettings", "prepare"]

_WIRES = {"fp32", "fp16", "int8"}
_INPUT_WIRES = {"fp32", "fp16", "uint8"}


@dataclass(frozen=True)
class SplitSettings:
    """The ``split`` options the runtime shares with ``split`` (one place, so adding one is a line).

    Attributes:
        board: Board profile name or path.
        link: Link profile name or path.
        server: Server profile name or path (None: a free server).
        objective: ``energy``, ``latency`` or ``weighted``.
        alpha: Weight of energy in the weighted objective.
        wire: How intermediate tensors travel (``fp32``, ``fp16``, ``int8``; None: the precision).
        input_wire: How the model's input travels (``fp32``, ``fp16``, ``uint8``).
        mode: ``eager``, ``graph`` or ``tensorrt`` (:class:`splitprune.deploy.Deployment`).
        precision: ``fp32``, ``fp16`` or ``int8`` (None: the board profile's).
        power_mode: nvpmodel power mode (None: the board profile's).
        clocks: Explicit clocks over the power mode (``gpu=..,emc=..``), None: the mode's.
        launch: TensorRT launch method (None: ``enqueue``).
        rate_range_bps: ``(low, high)`` rates the policy covers, bit/s.
        input_shape: Input shape (None: the model's own).
        seed: Seed for the weights of models built without trained weights.
    """

    board: str = "tx2"
    link: str = "wifi"
    server: str | None = None
    objective: str = "energy"
    alpha: float = 0.5
    wire: str | None = None
    input_wire: str = "uint8"
    mode: str = "eager"
    precision: str | None = None
    power_mode: str | None = None
    clocks: str | None = None
    launch: str | None = None
    rate_range_bps: tuple[float, float] = (1e5, 1e10)
    input_shape: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.wire is not None and self.wire not in _WIRES:
            raise SplitpruneError(f"the runtime cannot send --wire {self.wire!r}; use fp32, fp16 or int8")
        if self.input_wire not in _INPUT_WIRES:
            raise SplitpruneError(
                f"the runtime cannot send --input-wire {self.input_wire!r}; use uint8, fp16 or fp32"
            )
        low, high = self.rate_range_bps
        if not (0 < low < high and math.isfinite(high)):
            raise SplitpruneError(f"bad rate range {low:g}:{high:g}; give 0 < LOW < HIGH")


@dataclass(frozen=True)
class Cut:
    """One placement the policy chooses on some rates.

    Attributes:
        cut_id: Short hash of the device nodes (what messages name).
        kind: ``all_local``, ``full_offload`` or ``split``.
        device_nodes: Nodes on the device.
        crossing: Tensors the head returns, in order (``("output",)`` when all local): the nodes of
            :func:`splitprune.export.split_modules`, which may differ from the solver's cut where a
            tuple's elements or constants cross.
        codecs: The codec of each crossing tensor (input wire for graph inputs, wire otherwise).
        ranges_bps: The rate ranges ``(low, high)`` the policy gives this cut, bit/s.
        sent_bytes: Bytes the split model puts on the wire.
        mask: Device mask in the problem's node order.
    """

    cut_id: str
    kind: str
    device_nodes: tuple[str, ...]
    crossing: tuple[str, ...]
    codecs: tuple[str, ...]
    ranges_bps: tuple[tuple[float, float], ...]
    sent_bytes: int
    mask: np.ndarray = field(repr=False, compare=False)

    @property
    def all_local(self) -> bool:
        """Whether nothing is sent."""
        return self.kind == "all_local"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {"cut": self.cut_id, "kind": self.kind, "crossing": list(self.crossing),
                "sent_bytes": self.sent_bytes, "ranges_bps": [list(r) for r in self.ranges_bps]}


def cut_id(device_nodes: tuple[str, ...]) -> str:
    """A short stable id of a placement."""
    return hashlib.sha256("\n".join(sorted(device_nodes)).encode()).hexdigest()[:12]


class SplitModel:
    """A model prepared for split inference: graph, policy, cuts, and head/tail modules on demand.

    Attributes:
        spec: The model spec.
        settings: The split settings.
        module: The network with real weights (eval mode).
        example: An example input (its shape is the one every request must have).
        graph: The annotated :class:`~splitprune.graph.LayerGraph`.
        problem: The :class:`~splitprune.split.SplitProblem`.
        policy: The :class:`~splitprune.split.BandwidthPolicy`.
        link: The link profile.
        cuts: The distinct placements of the policy, by ascending rate of first use.
    """

    def __init__(
        self, spec: str, settings: SplitSettings, *, extra_placements: tuple[tuple[str, ...], ...] = ()
    ) -> None:
        from ..deploy import Deployment
        from ..graph import trace
        from ..link import load_link, load_server
        from ..models import load_model
        from ..split import SplitOptions, split_policy, split_problem

        self.spec, self.settings = spec, settings
        deployed = Deployment.of(
            settings.board, mode=settings.mode, precision=settings.precision, power_mode=settings.power_mode,
            clocks=settings.clocks, launch=settings.launch,
        )
        self.wire = settings.wire or deployed.precision
        if self.wire not in _WIRES:
            raise SplitpruneError(f"the runtime cannot send --wire {self.wire!r}; use fp32, fp16 or int8")
        self.link = load_link(settings.link)
        server = load_server(settings.server) if settings.server is not None else None
        torch.manual_seed(settings.seed)
        loaded = load_model(spec, device="cpu")
        self.module = loaded.module.eval()
        shape = settings.input_shape or loaded.input_shape
        generator = torch.Generator().manual_seed(settings.seed)
        self.example = torch.randn(shape, generator=generator)
        self.graph = trace(self.module, self.example, name=spec)
        self.problem = split_problem(self.graph, deployed, wire=self.wire, input_wire=settings.input_wire,
                                     server=server)
        self.options = SplitOptions(objective=settings.objective, alpha=settings.alpha)
        low, high = settings.rate_range_bps
        self.policy = split_policy(self.graph, deployed, self.link, low, high, options=self.options,
                                   server=server, wire=self.wire, input_wire=settings.input_wire)
        self._parts: dict[str, SplitModules] = {}
        self.cuts = self._cuts(extra_placements)

    def _cuts(self, extra: tuple[tuple[str, ...], ...]) -> tuple[Cut, ...]:
        p = self.problem
        index = {name: i for i, name in enumerate(p.names)}
        ranges: dict[tuple[str, ...], list[tuple[float, float]]] = {}
        for piece in self.policy.pieces:
            if not piece.feasible:
                continue
            spans = ranges.setdefault(tuple(sorted(piece.device_nodes)), [])
            if spans and math.isclose(spans[-1][1], piece.low_bps, rel_tol=1e-9):
                spans[-1] = (spans[-1][0], piece.high_bps)
            else:
                spans.append((piece.low_bps, piece.high_bps))
        for nodes in (*extra, p.names):  # all local is always there: it is the fallback
            ranges.setdefault(tuple(sorted(nodes)), [])
        cuts = []
        for nodes, spans in ranges.items():
            mask = np.zeros(p.n, dtype=bool)
            unknown = [n for n in nodes if n not in index]
            if unknown:
                raise SplitpruneError(f"node {unknown[0]!r} is not in {self.spec}; name traced nodes")
            mask[[index[n] for n in nodes]] = True
            if not p.is_valid(mask):
                raise SplitpruneError("a placement is not closed under predecessors; add the missing nodes")
            sent = p.sent(mask)
            kind = "all_local" if mask.all() else (
                "full_offload" if int(mask.sum()) == len(p.inputs) else "split")
            # what the head returns: the cut's tensors, with a tuple's elements taken on the device
            # and tensors built from constants left to the tail (splitprune.export.split_modules)
            parts = self._parts[cut_id(nodes)] = split_modules(self.graph.gm, nodes)
            crossing = parts.crossing
            inputs = {p.names[i] for i in p.inputs}
            codecs = tuple(self.settings.input_wire if c in inputs else self.wire for c in crossing)
            cuts.append(Cut(cut_id(nodes), kind, nodes, crossing, codecs, tuple(spans),
                            int(p.wire_bytes[sent].sum()), mask))
        return tuple(cuts)

    @cached_property
    def model_id(self) -> str:
        """Hash of the spec, the input shape and every parameter and buffer."""
        h = hashlib.sha256(f"{self.spec}|{tuple(self.example.shape)}".encode())
        for name, tensor in self.module.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def cut(self, cut_id: str) -> Cut:
        """The cut named ``cut_id``; KeyError if the policy has none."""
        for c in self.cuts:
            if c.cut_id == cut_id:
                return c
        raise KeyError(cut_id)

    @property
    def all_local_cut(self) -> Cut:
        """The placement that runs everything on the device (the fallback)."""
        return next(c for c in self.cuts if c.all_local)

    def parts(self, cut: Cut) -> SplitModules:
        """Head and tail ``GraphModule`` s of ``cut`` (built once)."""
        if cut.cut_id not in self._parts:
            self._parts[cut.cut_id] = split_modules(self.graph.gm, cut.device_nodes)
        return self._parts[cut.cut_id]

    def predicted_latency_s(self, cut: Cut, rate_bps: float) -> float:
        """The model's end-to-end latency of ``cut`` at ``rate_bps``."""
        from ..split import evaluate

        rate = min(max(rate_bps, self.settings.rate_range_bps[0]), self.settings.rate_range_bps[1])
        return float(evaluate(self.problem, cut.mask, self.link.figures(rate)).latency_s)

    def policy_cut(self, rate_bps: float) -> Cut:
        """The cut the policy chooses at ``rate_bps`` (clipped to the policy's range)."""
        for c in self.cuts:
            if any(lo <= rate_bps <= hi for lo, hi in c.ranges_bps):
                return c
        below = rate_bps < self.settings.rate_range_bps[0]
        piece = self.policy.pieces[0 if below else -1]
        return next(c for c in self.cuts if c.device_nodes == tuple(sorted(piece.device_nodes)))


def prepare(spec: str, settings: SplitSettings | None = None, *,
            extra_placements: tuple[tuple[str, ...], ...] = ()) -> SplitModel:
    """Build the model and its policy; ``extra_placements`` adds cuts the policy does not choose."""
    return SplitModel(spec, settings or SplitSettings(), extra_placements=extra_placements)
