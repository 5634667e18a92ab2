"""The split problem as arrays, and the reference evaluation of one placement.

A placement is the set ``D`` of nodes that run on the device. It must contain the inputs and be closed
under predecessors (nothing comes back from the server). With ``x_v = 1`` for ``v`` in ``D``:

- ``sent_u = 1`` iff ``u`` is in ``D`` and some consumer of ``u`` is not: the tensor is charged once,
  however many server-side layers read it;
- ``offloaded = 1 - x_output``: the result is produced on the server (the RTT is charged, and the
  downlink of the result when that option is on);
- device energy = sum of ``energy_j`` over ``D`` + ``energy_per_byte_j`` x bytes sent +
  ``energy_per_message_j`` x tensors sent (+ result downlink energy);
- latency = device ``latency_s`` over ``D`` + transfer (bytes, messages, RTT) + server latency outside
  ``D`` (sequential; no pipelining);
- device memory = parameter bytes of ``D`` + peak activations: running ``D`` in graph order, a tensor
  is alive from its producer until its last device consumer, and a sent tensor until the head returns.

:func:`evaluate` is the reference semantics; the solvers' models must agree with it exactly (tests
check that by brute force).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import networkx as nx
import numpy as np

from ..errors import SplitpruneError
from ..link import LinkFigures
from ..pricing import op_costs
from .wire import InputWire, WireFormat

__all__ = ["Costs", "Evaluation", "SplitProblem", "closed_placements", "evaluate"]

@dataclass(frozen=True)
class Costs:
    """Linear costs of one objective or constraint over a placement, all non-negative.

    ``value = dev @ x + srv @ (1 - x) + send @ sent`` (the offload term is folded into ``srv`` of the
    output node).
    """

    dev: np.ndarray
    srv: np.ndarray
    send: np.ndarray

    def __add__(self, other: Costs) -> Costs:
        return Costs(self.dev + other.dev, self.srv + other.srv, self.send + other.send)

    def scaled(self, factor: float) -> Costs:
        """These costs times ``factor``."""
        return Costs(self.dev * factor, self.srv * factor, self.send * factor)

    def value(self, x: np.ndarray, sent: np.ndarray) -> float:
        """The cost of placement ``x`` (0/1 floats) sending ``sent``."""
        return float(self.dev @ x + self.srv @ (1.0 - x) + self.send @ sent)


@dataclass(frozen=True)
class SplitProblem:
    """A DAG with per-node costs, in topological order (index ``i`` is ``names[i]``).

    Attributes:
        names: Node names in topological order.
        preds: Predecessor indices of every node.
        succs: Successor indices of every node.
        inputs: Indices of the nodes that must run on the device.
        output: Index of the output node (off the device means "offloaded").
        energy_j: Device energy of every node, J.
        latency_s: Device latency of every node, s.
        server_latency_s: Server latency of every node, s.
        server_energy_j: Server energy of every node, J (reported only).
        out_bytes: Native bytes every node outputs.
        wire_bytes: Bytes sent if the node's output crosses the cut, after the wire format.
        is_tensor: Whether the node's output is a tensor (a message when sent).
        param_bytes: Weight bytes of every node, for device memory.
        wire: The wire format of intermediate tensors.
        input_wire: The wire format of the graph's input tensors.
        result_bytes: Bytes of the model's result (for the optional downlink).
        kinds: Layer kind of every node (for reports).
        output_shapes: Output shapes of every node (for reports).
        dtypes: Output dtype of every node.
    """

    names: tuple[str, ...]
    preds: tuple[tuple[int, ...], ...]
    succs: tuple[tuple[int, ...], ...]
    inputs: tuple[int, ...]
    output: int
    energy_j: np.ndarray
    latency_s: np.ndarray
    server_latency_s: np.ndarray
    server_energy_j: np.ndarray
    out_bytes: np.ndarray
    wire_bytes: np.ndarray
    is_tensor: np.ndarray
    param_bytes: np.ndarray
    wire: WireFormat
    result_bytes: int
    input_wire: InputWire | None = None
    kinds: tuple[str, ...] = ()
    output_shapes: tuple[tuple[tuple[int, ...], ...], ...] = ()
    dtypes: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        """Number of nodes."""
        return len(self.names)

    @classmethod
    def from_digraph(
        cls,
        dag: nx.DiGraph,
        order: Sequence[str],
        *,
        inputs: Iterable[str],
        output: str,
        wire: WireFormat | None = None,
        input_wire: InputWire | None = None,
        server: Any = None,
    ) -> SplitProblem:
        """Build from a DiGraph carrying the CONTRACT.md node attributes.

        Required per node: ``energy_j``, ``latency_s``, ``out_bytes``. Optional: ``dtype`` (default
        float32), ``is_tensor`` (True), ``param_bytes`` (0), ``server_latency_s``/``server_energy_j``
        (0; used when ``server`` is None), and ``kind``/``macs``/``mem_bytes``/``kernels`` when a
        ``server`` profile (anything with ``latency_s``/``energy_j`` cost models) is given.
        ``wire`` prices intermediate tensors; ``input_wire`` prices the ``inputs`` (default: as ``wire``).

        Raises:
            SplitpruneError: A node lacks a cost or the order is not topological.
        """
        wire = wire or WireFormat()
        names = tuple(order)
        index = {name: i for i, name in enumerate(names)}
        if len(index) != dag.number_of_nodes() or any(name not in dag for name in names):
            raise SplitpruneError("order must list every graph node exactly once")
        nodes = dag.nodes
        for name in names:
            if "energy_j" not in nodes[name] or "latency_s" not in nodes[name]:
                raise SplitpruneError(
                    f"node {name!r} has no energy_j/latency_s; annotate the graph with a board first"
                )
        preds = tuple(tuple(index[p] for p in dag.predecessors(v)) for v in names)
        if any(p >= i for i, ps in enumerate(preds) for p in ps):
            raise SplitpruneError("order is not topological: a node comes before its input")
        succs = tuple(tuple(sorted(index[s] for s in dag.successors(v))) for v in names)

        def column(key: str, default: Any = 0.0, dtype: Any = float) -> np.ndarray:
            return np.array([nodes[v].get(key, default) for v in names], dtype=dtype)

        if server is not None:  # the server's own tables, with the board's formulas
            costs = [op_costs(server, nodes[v]) for v in names]
            server_energy = np.array([e for e, _ in costs])
            server_latency = np.array([t for _, t in costs])
        else:
            server_latency = column("server_latency_s")
            server_energy = column("server_energy_j")
        out_bytes = column("out_bytes", 0, np.int64)
        dtypes = [str(nodes[v].get("dtype", "float32")) for v in names]
        wire_bytes = np.array(
            [wire.wire_bytes(int(b), d) for b, d in zip(out_bytes, dtypes, strict=True)], dtype=np.int64
        )
        out = index[output]
        input_ids = tuple(sorted(index[i] for i in inputs))
        if input_wire is not None:
            for i in input_ids:
                shapes = nodes[names[i]].get("output_shapes", ())
                wire_bytes[i] = input_wire.wire_bytes(int(out_bytes[i]), dtypes[i], shapes)
        if not input_ids:
            raise SplitpruneError("the graph has no input node")
        return cls(
            names=names, preds=preds, succs=succs, inputs=input_ids, output=out,
            energy_j=column("energy_j"), latency_s=column("latency_s"),
            server_latency_s=server_latency, server_energy_j=server_energy,
            out_bytes=out_bytes, wire_bytes=wire_bytes,
            is_tensor=column("is_tensor", True, bool), param_bytes=column("param_bytes", 0, np.int64),
            wire=wire, result_bytes=int(wire_bytes[out]), input_wire=input_wire,
            kinds=tuple(str(nodes[v].get("kind", "other")) for v in names),
            output_shapes=tuple(
                tuple(tuple(int(d) for d in s) for s in nodes[v].get("output_shapes", ()))
                for v in names
            ),
            dtypes=tuple(dtypes),
        )

    # -- linear cost vectors -------------------------------------------------------------------
    def energy_costs(self, link: LinkFigures, *, downlink: bool = False) -> Costs:
        """Device energy (compute + transmission [+ result downlink]) as linear costs, J."""
        send = self.wire_bytes * link.energy_per_byte_j + self.is_tensor * link.energy_per_message_j
        srv = np.zeros(self.n)
        if downlink:
            srv[self.output] = self.result_bytes * link.result_energy_per_byte_j
        return Costs(self.energy_j.astype(float), srv, send.astype(float))

    def latency_costs(self, link: LinkFigures, *, downlink: bool = False) -> Costs:
        """End-to-end latency (device + transfer + RTT [+ downlink] + server) as linear costs, s."""
        send = self.wire_bytes * link.latency_per_byte_s + self.is_tensor * link.latency_per_message_s
        srv = self.server_latency_s.astype(float).copy()
        srv[self.output] += link.rtt_s
        if downlink:
            srv[self.output] += self.result_bytes * link.result_latency_per_byte_s
        return Costs(self.latency_s.astype(float), srv, send.astype(float))

    # -- placements ----------------------------------------------------------------------------
    def all_local(self) -> np.ndarray:
        """Every node on the device."""
        return np.ones(self.n, dtype=bool)

    def full_offload(self) -> np.ndarray:
        """Only the inputs on the device: the raw input is sent."""
        x = np.zeros(self.n, dtype=bool)
        x[list(self.inputs)] = True
        return x

    def sent(self, x: np.ndarray) -> np.ndarray:
        """Which node outputs cross the cut under placement ``x``."""
        return np.array(
            [bool(x[u]) and any(not x[v] for v in self.succs[u]) for u in range(self.n)], dtype=bool
        )

    def is_valid(self, x: np.ndarray) -> bool:
        """Whether ``x`` holds the inputs and is closed under predecessors."""
        return all(x[i] for i in self.inputs) and all(
            x[p] for v in range(self.n) if x[v] for p in self.preds[v]
        )

    def memory_bytes(self, x: np.ndarray) -> int:
        """Device memory of placement ``x``: head weights plus peak live activations."""
        sent = self.sent(x)
        act = self.activation_bytes()
        delta = np.zeros(self.n + 1, dtype=np.int64)  # live tensors made before step t, by t
        for u in np.flatnonzero(x):
            end = self.n - 1 if sent[u] else max((v for v in self.succs[u] if x[v]), default=-1)
            if end > u:
                delta[u + 1] += act[u]
                delta[end + 1] -= act[u]
        live = np.cumsum(delta)[: self.n] + act
        peak = int(live[x].max()) if x.any() else 0
        return int(self.param_bytes[x].sum()) + peak

    def activation_bytes(self) -> np.ndarray:
        """Native bytes each node holds in device memory (the output node holds nothing new)."""
        act = self.out_bytes.copy()
        act[self.output] = 0
        return act


@dataclass(frozen=True)
class Evaluation:
    """Everything about one placement (the reference semantics of the module docstring).

    Attributes:
        device_energy_j: Device compute energy, J.
        transmission_energy_j: Device energy to send the cut tensors (+ receive the result), J.
        total_energy_j: Their sum, J.
        device_latency_s: Device compute time, s.
        transfer_latency_s: Transfer time incl. RTT and optional downlink, s.
        server_latency_s: Server compute time, s.
        latency_s: End-to-end latency, s.
        server_energy_j: Server energy (reported, not charged), J.
        sent_bytes: Bytes on the wire, after the wire format.
        sent_tensors: Number of tensors that cross.
        memory_bytes: Device memory (weights + peak activations of the head), bytes.
        offloaded: Whether the result is produced on the server.
    """

    device_energy_j: float
    transmission_energy_j: float
    total_energy_j: float
    device_latency_s: float
    transfer_latency_s: float
    server_latency_s: float
    latency_s: float
    server_energy_j: float
    sent_bytes: int
    sent_tensors: int
    memory_bytes: int
    offloaded: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def evaluate(
    problem: SplitProblem, x: np.ndarray, link: LinkFigures, *, downlink: bool = False
) -> Evaluation:
    """Evaluate placement ``x`` (boolean per node) with the reference semantics."""
    x = np.asarray(x, dtype=bool)
    sent = problem.sent(x)
    offloaded = not x[problem.output]
    sent_bytes = int(problem.wire_bytes[sent].sum())
    tensors = int((sent & problem.is_tensor).sum())
    device_energy = float(problem.energy_j[x].sum())
    tx_energy = sent_bytes * link.energy_per_byte_j + tensors * link.energy_per_message_j
    transfer = sent_bytes * link.latency_per_byte_s + tensors * link.latency_per_message_s
    if offloaded:
        transfer += link.rtt_s
        if downlink:
            tx_energy += problem.result_bytes * link.result_energy_per_byte_j
            transfer += problem.result_bytes * link.result_latency_per_byte_s
    device_latency = float(problem.latency_s[x].sum())
    server_latency = float(problem.server_latency_s[~x].sum())
    return Evaluation(
        device_energy_j=device_energy,
        transmission_energy_j=float(tx_energy),
        total_energy_j=device_energy + float(tx_energy),
        device_latency_s=device_latency,
        transfer_latency_s=float(transfer),
        server_latency_s=server_latency,
        latency_s=device_latency + float(transfer) + server_latency,
        server_energy_j=float(problem.server_energy_j[~x].sum()),
        sent_bytes=sent_bytes,
        sent_tensors=tensors,
        memory_bytes=problem.memory_bytes(x),
        offloaded=bool(offloaded),
    )


def closed_placements(problem: SplitProblem) -> Iterator[np.ndarray]:
    """Every placement that holds the inputs and is closed under predecessors (exhaustive search).

    The count grows exponentially with the graph: for checking solvers on small DAGs only.
    """
    free = [v for v in range(problem.n) if v not in problem.inputs]
    x = np.zeros(problem.n, dtype=bool)
    x[list(problem.inputs)] = True

    def extend(k: int) -> Iterator[np.ndarray]:
        if k == len(free):
            yield x.copy()
            return
        v = free[k]
        yield from extend(k + 1)
        if all(x[p] for p in problem.preds[v]):
            x[v] = True
            yield from extend(k + 1)
            x[v] = False

    yield from extend(0)
