"""The unconstrained split as an s-t minimum cut (DADS-style, with the reverse infinite edges).

The source side is the device. For costs ``dev`` (paid on the device), ``srv`` (paid on the server)
and ``send`` (paid once per tensor that crosses):

- ``s -> v`` with capacity ``srv[v]`` and ``v -> t`` with capacity ``dev[v]``;
- ``s -> input`` with infinite capacity (inputs stay on the device);
- for every edge ``u -> v`` an infinite edge ``v -> u``: a device node's inputs are on the device.
  Public DADS reimplementations omit it, and their cuts can then bring data back from the server;
- for a tensor ``u`` read by several nodes, an auxiliary node ``u'`` with ``u -> u'`` of capacity
  ``send[u]`` and infinite ``u' -> v`` for every consumer ``v``, so the tensor is paid once however
  many server nodes read it. With one consumer the edge ``u -> v`` carries ``send[u]`` directly.

A cut's capacity equals the placement's cost, and every finite cut is a valid placement, so a
minimum cut is an optimal split. Capacities are scaled to integers (total about 2**50) so the flow
algorithm is exact; float residues would otherwise put nodes on the wrong side of the cut.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
from networkx.algorithms.flow import preflow_push

from .problem import Costs, SplitProblem

__all__ = ["build_cut_graph", "solve_mincut"]

_SOURCE, _SINK = "__source__", "__sink__"


def build_cut_graph(problem: SplitProblem, costs: Costs) -> nx.DiGraph:
    """The flow network of the module docstring; edges without ``capacity`` are infinite."""
    total = float(costs.dev.sum() + costs.srv.sum() + costs.send.sum())
    scale = 2.0**50 / total if total > 0 else 1.0
    costs = Costs(*(np.rint(c * scale).astype(np.int64) for c in (costs.dev, costs.srv, costs.send)))
    g = nx.DiGraph()
    g.add_nodes_from(range(problem.n))
    g.add_nodes_from((_SOURCE, _SINK))
    for v in range(problem.n):
        if costs.srv[v] > 0:
            g.add_edge(_SOURCE, v, capacity=int(costs.srv[v]))
        if costs.dev[v] > 0:
            g.add_edge(v, _SINK, capacity=int(costs.dev[v]))
    for i in problem.inputs:
        g.add_edge(_SOURCE, i)  # infinite
    for u in range(problem.n):
        consumers = problem.succs[u]
        for v in consumers:
            g.add_edge(v, u)  # infinite: closure under predecessors
        if not consumers or costs.send[u] <= 0:
            continue
        if len(consumers) == 1:
            g.add_edge(u, consumers[0], capacity=int(costs.send[u]))
        else:
            aux = ("sent", u)
            g.add_edge(u, aux, capacity=int(costs.send[u]))
            for v in consumers:
                g.add_edge(aux, v)  # infinite
    return g


def solve_mincut(problem: SplitProblem, costs: Costs) -> tuple[np.ndarray, float]:
    """Minimum-cost placement by max-flow/min-cut; returns (device mask, cut value)."""
    g = build_cut_graph(problem, costs)
    _, (source_side, _) = nx.minimum_cut(g, _SOURCE, _SINK, flow_func=preflow_push)
    x = np.zeros(problem.n, dtype=bool)
    for node in source_side:
        if isinstance(node, (int, np.integer)):
            x[node] = True
    return x, costs.value(x.astype(float), problem.sent(x).astype(float))
