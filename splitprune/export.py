"""Run the split: cut a traced model into a head (device) and a tail (server).

:func:`split_modules` turns a :class:`~splitprune.graph.LayerGraph`'s fx ``GraphModule`` and a device
set into two ``GraphModule`` s: ``head(*inputs)`` returns a tuple of the tensors that cross, in graph
order, and ``tail(*crossing)`` returns the model's output, so ``tail(*head(x)) == model(x)``. When
everything runs on the device the head returns ``(output,)`` and the tail passes it through.
Parameters (``get_attr`` nodes) are never sent: each side reads its own copy. fx traces and the ATen
graphs of the dispatch and ``torch.export`` tracers (YOLO, torchvision detectors) cut alike; see
:func:`split_modules` for what that takes (in-place ops, tuples, constants, output pytrees).

:func:`export_split` writes both as ``torch.export`` programs (``head.pt2``, ``tail.pt2``; load with
``torch.export.load(path).module()``), their generated code (``head.py``, ``tail.py``) for reading, and
``manifest.json`` describing the crossing tensors.
"""

from __future__ import annotations

import io
import json
import operator
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.utils._pytree as pytree

from .errors import SplitpruneError, exception_reason
from .files import make_directory, write_atomic

__all__ = ["ExportError", "SplitModules", "export_split", "split_modules"]

MANIFEST_SCHEMA = "splitprune.split-export/1"


class ExportError(SplitpruneError):
    """The head or tail could not be built or exported."""


@dataclass(frozen=True)
class SplitModules:
    """The two halves of a split model.

    Attributes:
        head: Device part; returns a tuple of the crossing tensors.
        tail: Server part; takes the crossing tensors, returns the model output.
        crossing: Names of the crossing nodes, in the order the head returns them.
        all_local: Whether the head computes the whole model.
    """

    head: fx.GraphModule
    tail: fx.GraphModule
    crossing: tuple[str, ...]
    all_local: bool


def split_modules(gm: fx.GraphModule, device_nodes: Collection[str]) -> SplitModules:
    """Build head and tail ``GraphModule`` s for the placement ``device_nodes``.

    ``gm`` may be an fx-traced module or a ``torch.export`` one (``ExportedProgram.module()``, ATen
    ops). Before cutting, in-place ATen ops are made out-of-place (a tensor sent across the cut is
    never changed after it is read) and the export guard call is left out (each exported half gets
    its own guards). Only tensors cross: an element a server node takes from a device op's tuple
    (``chunk``, ``split``) is taken on the device, and nodes that read no input (YOLO's anchors and
    strides, built from constants) are recomputed by the tail rather than sent. Nodes without users
    that the placement does not name (assertions) run beside their inputs. The tail rebuilds the
    model's output pytree (YOLO's tuple of a tensor and a list, SSD's dict).

    Raises:
        ExportError: The placement is not closed under predecessors or misses an input.
    """
    graph = _functional_copy(gm.graph)
    nodes = list(graph.nodes)
    on_device = _placement(nodes, set(device_nodes))
    output = next(n for n in nodes if n.op == "output")
    all_local = output.name in on_device
    out_spec = _output_spec(gm)
    constant = _input_free(nodes)
    in_tail = _tail_nodes(nodes, on_device, constant, all_local)

    head = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    crossing: list[fx.Node] = []
    for n in nodes:
        if n.op == "output" or (n.op != "get_attr" and n.name not in on_device):
            continue
        if n.op == "get_attr" and not any(u.name in on_device for u in n.users):
            continue
        env[n] = head.node_copy(n, lambda a: env[a])
        if n.op != "get_attr" and n not in constant and any(u in in_tail for u in n.users):
            crossing.append(n)
    if all_local:
        result = fx.node.map_arg(output.args[0], lambda a: env[a])
        if out_spec is None:
            head.output((result,))
        else:  # the head returns (model output,): flat leaves, rebuilt as a 1-tuple of the pytree
            head.output(result)
            _rebuild_output(head, pytree.tree_flatten((_structure(out_spec),))[1])
    else:
        head.output(tuple(env[n] for n in crossing))

    tail = fx.Graph()
    tenv: dict[fx.Node, fx.Node] = {}
    if all_local:
        tail.output(tail.placeholder("result"))
    else:
        for n in crossing:
            tenv[n] = tail.placeholder(n.name)
        for n in nodes:
            if n in in_tail:
                tenv[n] = tail.node_copy(n, lambda a: tenv[a])
        if out_spec is not None:
            _rebuild_output(tail, out_spec)
    head_gm = fx.GraphModule(gm, head, "Head")
    tail_gm = fx.GraphModule(gm, tail, "Tail")
    names = ("output",) if all_local else tuple(n.name for n in crossing)
    return SplitModules(head_gm, tail_gm, names, all_local)


def _placement(nodes: list[fx.Node], device: set[str]) -> set[str]:
    """Names of the nodes that run on the device; raise :class:`ExportError` if that is not closed."""
    unknown = sorted(device - {n.name for n in nodes} - _GUARDS)
    if unknown:
        raise ExportError(f"node {unknown[0]!r} is not in the traced model; re-run the split")
    on_device = {n.name for n in nodes if n.name in device or n.op == "placeholder"}
    for n in nodes:
        if n.op in ("output", "get_attr") or n.name in on_device:
            continue
        inputs = [a for a in n.all_input_nodes if a.op != "get_attr"]
        takes_element = n.target is operator.getitem and len(inputs) == 1 and isinstance(n.args[1], int)
        if inputs and all(a.name in on_device for a in inputs) and (takes_element or not n.users):
            on_device.add(n.name)  # an element of a device tuple, or an unnamed dead end (assertion)
    for n in nodes:
        if n.op == "get_attr":
            continue
        if n.name in on_device:
            bad = [a.name for a in n.all_input_nodes if a.op != "get_attr" and a.name not in on_device]
            if bad:
                raise ExportError(f"{n.name!r} runs on the device but reads {bad[0]!r} from the server")
        elif n.op == "placeholder":
            raise ExportError(f"input {n.name!r} must run on the device")
    return on_device


def _input_free(nodes: list[fx.Node]) -> set[fx.Node]:
    """Nodes that read no model input, directly or not (they compute from weights and constants)."""
    free: set[fx.Node] = set()
    for n in nodes:
        if n.op in ("call_function", "call_method") and all(
            a.op == "get_attr" or a in free for a in n.all_input_nodes
        ):
            free.add(n)
    return free


def _tail_nodes(
    nodes: list[fx.Node], on_device: set[str], constant: set[fx.Node], all_local: bool
) -> set[fx.Node]:
    """Nodes the tail computes: the server's (the output too), the input-free ones they read, weights."""
    if all_local:
        return set()
    tail: set[fx.Node] = set()
    for n in reversed(nodes):
        if n.op == "get_attr" or n in constant:
            if any(u in tail for u in n.users):
                tail.add(n)
        elif n.name not in on_device:
            tail.add(n)
    return tail


_GUARDS = frozenset({"_guards_fn"})
"""Call targets of ``torch.export``'s input guards (``ExportedProgram.module()``): left out of both halves."""


def _in_place_variant(target: Any) -> Any:
    """The out-of-place ATen overload of an in-place one (``relu_`` -> ``relu``), or None."""
    if not isinstance(target, torch._ops.OpOverload):
        return None
    schema = target._schema
    packet = target.overloadpacket.__name__
    if not packet.endswith("_") or packet.startswith("_") or not schema.arguments:
        return None
    alias = schema.arguments[0].alias_info
    if alias is None or not alias.is_write:
        return None
    functional = getattr(torch.ops.aten, packet[:-1], None)
    return getattr(functional, target._overloadname, None) if functional is not None else None


def _functional_copy(graph: fx.Graph) -> fx.Graph:
    """A copy of ``graph`` with in-place ATen ops on fresh (non-view) tensors made out-of-place.

    Later readers of the mutated tensor read the op's result instead, so the data flow is explicit:
    a tensor the head sends is never mutated on the device after the tail's readers expect it. An
    in-place op on an input, a parameter or a view keeps its in-place form (the mutation must reach
    the base).
    """
    copy = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    latest: dict[fx.Node, fx.Node] = {}  # mutated tensor (original node) -> its value now (new node)
    kept_in_place: set[fx.Node] = set()  # in-place ops left as they are: their results alias a base
    for n in graph.nodes:
        if n.op == "call_module" and str(n.target) in _GUARDS:
            continue
        new = copy.node_copy(n, lambda a: latest.get(a, env[a]))
        env[n] = new
        functional = _in_place_variant(n.target) if n.op == "call_function" else None
        if functional is None:
            continue
        base = n.args[0] if n.args else None
        if isinstance(base, fx.Node) and _fresh(base) and base not in kept_in_place:
            new.target = functional
            latest[base] = new
        else:
            kept_in_place.add(n)
    copy.lint()
    return copy


def _fresh(node: fx.Node) -> bool:
    """Whether ``node`` owns its storage: the output of a non-view op (not an input, weight or view)."""
    if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
        return not node.target.is_view
    return node.op == "call_function" and node.target is not operator.getitem


def _output_spec(gm: fx.GraphModule) -> pytree.TreeSpec | None:
    """The pytree spec a ``torch.export`` module rebuilds its flat outputs with, else None."""
    codegen = gm.graph._codegen
    info = getattr(codegen, "pytree_info", None)
    if isinstance(codegen, fx.graph._PyTreeCodeGen) and info is not None:
        return info.out_spec
    return None


def _structure(spec: pytree.TreeSpec) -> Any:
    """A pytree of ``spec``'s shape (leaves are placeholders)."""
    return pytree.tree_unflatten([0] * spec.num_leaves, spec)


class _PyTreeOutput(fx.graph._PyTreeCodeGen):
    """fx code generation that takes plain positional inputs and returns its flat outputs as a pytree."""

    def process_inputs(self, *inputs: Any) -> Any:
        return inputs

    def gen_fn_def(self, free_vars: list[str], maybe_return_annotation: str, **kwargs: Any) -> str:
        return fx.graph.CodeGen.gen_fn_def(self, free_vars, maybe_return_annotation, **kwargs)


def _rebuild_output(graph: fx.Graph, out_spec: pytree.TreeSpec) -> None:
    """Make ``graph`` return its flat outputs rebuilt as ``out_spec`` (its inputs stay as they are)."""
    names = [n.name for n in graph.nodes if n.op == "placeholder"]
    in_spec = pytree.tree_flatten((tuple(range(len(names))), {}))[1]
    graph._codegen = _PyTreeOutput(fx.graph._PyTreeInfo(names, in_spec, out_spec))


def _check(gm: fx.GraphModule, head: Any, tail: Any, inputs: tuple[torch.Tensor, ...]) -> float:
    """Largest absolute difference between the leaves of ``tail(*head(x))`` and of ``gm(x)``."""
    with torch.no_grad():
        got, want = pytree.tree_leaves(tail(*head(*inputs))), pytree.tree_leaves(gm(*inputs))
    shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else None for t in got]
    if shapes != [tuple(t.shape) if isinstance(t, torch.Tensor) else None for t in want]:
        raise ExportError("the exported head and tail do not return the model's outputs; report this bug")
    diffs = [
        float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
        for a, b in zip(got, want, strict=True)
        if isinstance(a, torch.Tensor)
    ]
    return max(diffs, default=0.0)


def _describe(value: Any) -> dict[str, Any]:
    if isinstance(value, torch.Tensor):
        return {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch."),
                "out_bytes": value.numel() * value.element_size()}
    return {"shape": None, "dtype": type(value).__name__, "out_bytes": 0}


def export_split(
    gm: fx.GraphModule,
    device_nodes: Collection[str],
    example_inputs: Sequence[torch.Tensor],
    directory: Path,
    *,
    model: str = "",
    wire_bytes: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Write ``head.pt2``, ``tail.pt2``, ``head.py``, ``tail.py`` and ``manifest.json``.

    Args:
        gm: The traced model (``LayerGraph.gm``) with real (not meta) weights.
        device_nodes: Nodes on the device.
        example_inputs: Real example inputs (their shapes fix the exported programs' shapes).
        directory: Output folder (created).
        model: Model name for the manifest.
        wire_bytes: Bytes on the wire per crossing node, from the solver (optional).

    Returns:
        The manifest; ``check.max_abs_error`` is the largest difference between the exported
        programs' ``tail(*head(x))`` and the traced model on the example input.

    Raises:
        ExportError: The model cannot be split there or torch.export fails.
        OutputError: ``directory`` or a file in it cannot be written.
    """
    parts = split_modules(gm, device_nodes)
    directory = make_directory(Path(directory))
    inputs = tuple(example_inputs)
    programs = {}
    crossing_values: Any = ()
    for name, part in (("head", parts.head), ("tail", parts.tail)):
        args = inputs if name == "head" else crossing_values
        try:
            programs[name] = torch.export.export(part, tuple(args))
            buffer = io.BytesIO()
            torch.export.save(programs[name], buffer)
        except Exception as exc:  # torch.export raises many types
            reason = exception_reason(exc)[:200]
            raise ExportError(f"torch.export failed on the {name}: {reason}") from None
        write_atomic(directory / f"{name}.pt2", buffer.getvalue())
        write_atomic(directory / f"{name}.py", part.code)
        if name == "head":  # the tail takes what the exported head returns (its pytree types included)
            with torch.no_grad():
                crossing_values = programs["head"].module()(*inputs)
    error = _check(gm, programs["head"].module(), programs["tail"].module(), inputs)
    tensors = []
    for i, (name, value) in enumerate(zip(parts.crossing, crossing_values, strict=True)):
        row = {"index": i, "name": name, **_describe(value)}
        if wire_bytes is not None and name in wire_bytes:
            row["wire_bytes"] = int(wire_bytes[name])
        tensors.append(row)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "model": model,
        "all_local": parts.all_local,
        "inputs": [_describe(t) for t in inputs],
        "head": {"program": "head.pt2", "code": "head.py", "nodes": sorted(set(device_nodes))},
        "tail": {"program": "tail.pt2", "code": "tail.py"},
        "crossing": tensors,
        "check": {"max_abs_error": error, "of": "tail(*head(x)) vs the traced model on the example input"},
        "usage": "head = torch.export.load('head.pt2').module(); "
        "tail = torch.export.load('tail.pt2').module(); y = tail(*head(x))",
    }
    write_atomic(directory / "manifest.json", json.dumps(manifest, indent=2) + "\n")  # written last
    return manifest
