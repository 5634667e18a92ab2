"""Kernel fusion as TensorRT builds an engine: which layer nodes run in which kernel.

The rules (one table, :data:`FUSES_INTO`, keyed by the kind of the node that joins):

- batch norm folds into the conv or linear op right before it (its scale and shift go into the
  weights: no work and no bytes of its own);
- an activation, and a residual ``add`` or ``mul``, fuse into the kernel whose last node produced
  their input, when nothing else reads that input (the add reads its other operand as an extra input);
  a chain of pointwise ops with nothing in between merges into one kernel the same way;
- views, flatten, dropout and identities cost nothing; a concatenation is written in place by its
  producers (no kernel);
- everything else (pooling, norms, softmax, reductions, GEMMs) starts a kernel of its own.

A kernel is priced on its first node, the *anchor*: the anchor's MACs, and bytes equal to what the
kernel reads from outside plus what its last node writes (folded batch-norm parameters vanish into
the conv's weights). The other members cost nothing. ``boundary`` (the device side of a split) stops
fusion across a cut, so both halves are priced as they would be built.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from .graph import LayerGraph

__all__ = ["FREE_IN_TENSORRT", "FUSES_INTO", "FusedKernel", "fuse"]

FREE_IN_TENSORRT = frozenset({"input", "output", "shape", "reshape", "identity", "cat"})
"""Kinds that launch no kernel in a TensorRT engine."""
_ANCHOR_GEMM = frozenset({"conv", "linear", "matmul"})
_POINTWISE = frozenset({"bn", "act", "add", "mul"})
FUSES_INTO: dict[str, frozenset[str]] = {
    "bn": frozenset({"conv", "linear"}),  # folded into the weights: only right after the GEMM itself
    "act": _ANCHOR_GEMM | _POINTWISE | {"pool"},
    "add": _ANCHOR_GEMM | _POINTWISE,
    "mul": _ANCHOR_GEMM | _POINTWISE,
}
"""Kind of a joining node -> anchor kinds of the kernels it may join."""


@dataclass
class FusedKernel:
    """One kernel of the engine.

    Attributes:
        anchor: The node that pays for the kernel.
        members: Its nodes in execution order (the anchor first).
        read_bytes: Bytes read from outside the kernel, weights included.
        write_bytes: Bytes its last node writes.
    """

    anchor: str
    members: list[str]
    read_bytes: int = 0
    write_bytes: int = 0

    @property
    def mem_bytes(self) -> int:
        """Bytes the kernel moves."""
        return self.read_bytes + self.write_bytes


def fuse(graph: LayerGraph, *, boundary: Collection[str] | None = None) -> dict[str, FusedKernel]:
    """Group ``graph``'s nodes into TensorRT kernels; returns each kernel by its anchor's name.

    Args:
        graph: A traced graph.
        boundary: Nodes on one side of a split: no kernel spans nodes on both sides.
    """
    nodes, preds = graph.nodes, graph.preds
    side = set(boundary) if boundary is not None else None
    readers: dict[str, int] = {name: 0 for name in graph.order}
    for name in graph.order:
        for p in preds[name]:
            readers[p] += 1
    kernel_of: dict[str, FusedKernel] = {}
    kernels: dict[str, FusedKernel] = {}
    for name in graph.order:
        attrs = nodes[name]
        kind = attrs["kind"]
        if kind in FREE_IN_TENSORRT:
            continue
        host = _host_kernel(name, kind, preds[name], kernel_of, readers, nodes, side)
        if host is None:
            host = kernels[name] = FusedKernel(name, [], read_bytes=int(attrs["param_bytes"]))
        host.members.append(name)
        host.read_bytes += sum(_bytes_of(nodes[p]) for p in preds[name] if kernel_of.get(p) is not host)
        host.write_bytes = int(attrs["out_bytes"])  # the previous tail's output stays inside the kernel
        kernel_of[name] = host
    return kernels


def _bytes_of(attrs: dict) -> int:
    return 0 if attrs["kind"] == "shape" else int(attrs["out_bytes"])


def _host_kernel(
    name: str,
    kind: str,
    inputs: list[str],
    kernel_of: dict[str, FusedKernel],
    readers: dict[str, int],
    nodes: dict[str, dict],
    side: set[str] | None,
) -> FusedKernel | None:
    """The kernel ``name`` joins, or None when it starts its own."""
    allowed = FUSES_INTO.get(kind)
    if allowed is None:
        return None
    for p in inputs:
        kernel = kernel_of.get(p)
        if kernel is None or kernel.members[-1] != p or readers[p] != 1:
            continue
        if side is not None and (p in side) != (name in side):
            continue
        anchor_kind = nodes[kernel.anchor]["kind"]
        if anchor_kind not in allowed or (kind == "bn" and len(kernel.members) > 1):
            continue
        if kind in ("add", "mul") and any(nodes[m]["kind"] in ("add", "mul") for m in kernel.members[1:]):
            continue  # one elementwise join per kernel, as TensorRT's epilogue fusions allow
        return kernel
    return None
