"""Which uplink rates make offloading or an intermediate split pay, per model, board and link.

    .venv/bin/python benchmarks/split_links_table.py [--readme README.md]

For ResNet-18, ResNet-50 and MobileNetV2 (224x224, traced on meta) on every shipped board and over
every shipped link, the exact bandwidth policy from 0.1 Mbit/s to 1 Gbit/s for device energy and for
end-to-end latency (server: gpu-server), with the default wire formats (input uint8, tensors fp32),
and for device energy once more with the camera frame sent as a JPEG (``--input-wire jpeg:90``).
Prints one JSON document with every policy piece; with ``--readme`` it also rewrites the table between
the ``split-links-table`` markers of that file, so the README never holds hand-typed numbers. Re-run it
whenever a board, link or server profile changes. Takes well under a minute.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

MODELS = ("resnet18", "resnet50", "mobilenet_v2")
LOW_BPS, HIGH_BPS = 1e5, 1e9
CASES = (("uint8", "energy"), ("uint8", "latency"), ("jpeg:90", "energy"))  # (input wire, objective)
BEGIN, END = "<!-- split-links-table:begin -->", "<!-- split-links-table:end -->"


def _mbps(rate_bps: float) -> str:
    return f"{rate_bps / 1e6:.3g}"


def _label(piece, nodes: int) -> str:
    if piece.split_kind != "split":
        return {"all_local": "local", "full_offload": "offload"}.get(piece.split_kind, piece.split_kind)
    cut = ", ".join(piece.cut)
    return f"split at {cut} ({len(piece.device_nodes)}/{nodes} nodes, {piece.sent_bytes / 1024:.0f} KB)"


def summarise(policy, nodes: int, link) -> str:
    """``local → 8.91 → offload``: the optimal split between breakpoints (Mbit/s; * = outside range)."""
    parts: list[str] = []
    last = None
    for piece in policy.pieces:
        if last is not None and piece.device_nodes == last.device_nodes:
            last = piece
            continue
        if last is not None:
            edge = piece.low_bps
            star = "" if link.in_measured_range(edge) else "*"
            parts.append(f"{_mbps(edge)}{star}")
        parts.append(_label(piece, nodes))
        last = piece
    return " → ".join(parts)


EDGE_BOARDS = ("tx2", "xavier-nx")  # the shipped H100 profiles are servers' figures, not edge devices


def build() -> tuple[dict, str]:
    """Solve every policy; return the JSON document and the markdown table."""
    import torch
    import torchvision

    from splitprune import annotate, load_board, trace
    from splitprune.config import shipped_names
    from splitprune.link import load_link, load_server
    from splitprune.split import InputWire, SplitOptions, SplitProblem, SplitSolver, bandwidth_policy

    boards = [b for b in shipped_names("boards") if b in EDGE_BOARDS]
    links = shipped_names("links")
    server = load_server("gpu-server")
    document: dict = {"range_bps": [LOW_BPS, HIGH_BPS], "input_wire": "uint8", "wire": "fp32",
                      "server": server.name, "rows": []}
    lines = ["| model | board | link (measured Mbit/s) | device energy | end-to-end latency | "
             "device energy, input jpeg:90 |", "|---|---|---|---|---|---|"]
    for model_name in MODELS:
        with torch.device("meta"):
            model = getattr(torchvision.models, model_name)(weights=None)
        for board_name in boards:
            board = load_board(board_name)
            graph = annotate(trace(model, torch.empty(1, 3, 224, 224, device="meta")), board)
            solvers = {
                wire: SplitSolver(SplitProblem.from_digraph(
                    graph.nx, graph.order, inputs=graph.inputs, output=graph.output,
                    input_wire=InputWire.parse(wire), server=server,
                ))
                for wire in ("uint8", "jpeg:90")
            }
            for link_name in links:
                link = load_link(link_name)
                low, high = link.uplink.measured_rate_bps
                cells = {}
                for input_wire, objective in CASES:
                    solver = solvers[input_wire]
                    policy = bandwidth_policy(solver, link, LOW_BPS, HIGH_BPS,
                                              options=SplitOptions(objective=objective))
                    summary = summarise(policy, solver.problem.n, link)
                    cells[input_wire, objective] = summary
                    document["rows"].append({
                        "model": model_name, "board": board_name, "link": link_name,
                        "input_wire": input_wire, "objective": objective, "summary": summary,
                        **policy.to_dict(),
                    })
                lines.append(f"| {model_name} | {board_name} | {link_name} ({_mbps(low)}-{_mbps(high)}) | "
                             f"{cells['uint8', 'energy']} | {cells['uint8', 'latency']} | "
                             f"{cells['jpeg:90', 'energy']} |")
    return document, "\n".join(lines)


def rewrite_readme(path: Path, table: str) -> None:
    """Replace the text between the markers in ``path`` with ``table``."""
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} markers")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{table}\n{END}", text), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, help="rewrite the table between the markers of this file")
    args = parser.parse_args()
    start = time.perf_counter()
    document, table = build()
    document["elapsed_s"] = time.perf_counter() - start
    document["python"] = sys.version.split()[0]
    document["markdown"] = table
    if args.readme is not None:
        rewrite_readme(args.readme, table)
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
