"""Run the split: cut a traced model into a head (device) and a tail (server).

:func:`split_modules` turns a :class:`~splitprune.graph.LayerGraph`'s fx ``GraphModule`` and a device
set into two ``GraphModule`` s: ``head(*inputs)`` returns a tuple of the tensors that cross, in graph
order, and ``tail(*crossing)`` returns the model's output, so ``tail(*head(x)) == model(x)``. When
everything runs on the device the head returns ``(output,)`` and the tail passes it through.
Parameters (``get_attr`` nodes) are never sent: each side reads its own copy.

:func:`export_split` writes both as ``torch.export`` programs (``head.pt2``, ``tail.pt2``; load with
``torch.export.load(path).module()``), their generated code (``head.py``, ``tail.py``) for reading, and
``manifest.json`` describing the crossing tensors.
"""

from __future__ import annotations

import io
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx

from .errors import SplitpruneError
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

    Raises:
        ExportError: The placement is not closed under predecessors or misses an input.
    """
    device = set(device_nodes)
    nodes = list(gm.graph.nodes)
    by_name = {n.name: n for n in nodes}
    unknown = sorted(device - set(by_name))
    if unknown:
        raise ExportError(f"node {unknown[0]!r} is not in the traced model; re-run the split")
    output = next(n for n in nodes if n.op == "output")
    on_device = {n.name for n in nodes if n.name in device or n.op == "placeholder"}
    for n in nodes:
        if n.op == "get_attr":
            continue
        if n.name in on_device:
            bad = [a.name for a in n.all_input_nodes if a.op != "get_attr" and a.name not in on_device]
            if bad:
                raise ExportError(f"{n.name!r} runs on the device but reads {bad[0]!r} from the server")
        elif n.op == "placeholder":
            raise ExportError(f"input {n.name!r} must run on the device")
    all_local = output.name in on_device

    head = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    crossing: list[fx.Node] = []
    for n in nodes:
        if n.op == "output" or (n.op != "get_attr" and n.name not in on_device):
            continue
        if n.op == "get_attr" and not any(u.name in on_device for u in n.users):
            continue
        env[n] = head.node_copy(n, lambda a: env[a])
        if n.op != "get_attr" and not all_local and any(u.name not in on_device for u in n.users):
            crossing.append(n)
    if all_local:
        head.output((fx.node.map_arg(output.args[0], lambda a: env[a]),))
    else:
        head.output(tuple(env[n] for n in crossing))

    tail = fx.Graph()
    tenv: dict[fx.Node, fx.Node] = {}
    if all_local:
        result = tail.placeholder("result")
        tail.output(result)
    else:
        for n in crossing:
            tenv[n] = tail.placeholder(n.name)
        for n in nodes:
            if n.op == "get_attr":
                if any(u.name not in on_device for u in n.users):
                    tenv[n] = tail.node_copy(n, lambda a: tenv[a])
            elif n.name not in on_device:
                tenv[n] = tail.node_copy(n, lambda a: tenv[a])
    head_gm = fx.GraphModule(gm, head, "Head")
    tail_gm = fx.GraphModule(gm, tail, "Tail")
    names = ("output",) if all_local else tuple(n.name for n in crossing)
    return SplitModules(head_gm, tail_gm, names, all_local)


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
        The manifest.

    Raises:
        ExportError: The model cannot be split there or torch.export fails.
        OutputError: ``directory`` or a file in it cannot be written.
    """
    parts = split_modules(gm, device_nodes)
    directory = make_directory(Path(directory))
    inputs = tuple(example_inputs)
    with torch.no_grad():
        crossing_values = parts.head(*inputs)
    for name, part, args in (("head", parts.head, inputs), ("tail", parts.tail, crossing_values)):
        try:
            program = torch.export.export(part, tuple(args))
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
        except Exception as exc:  # torch.export raises many types
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"torch.export failed on the {name}: {reason}") from None
        write_atomic(directory / f"{name}.pt2", buffer.getvalue())
        write_atomic(directory / f"{name}.py", part.code)
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
        "usage": "head = torch.export.load('head.pt2').module(); "
        "tail = torch.export.load('tail.pt2').module(); y = tail(*head(x))",
    }
    write_atomic(directory / "manifest.json", json.dumps(manifest, indent=2) + "\n")  # written last
    return manifest
