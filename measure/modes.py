"""Execution modes: how a measured point is run.

- ``eager``: one Python call per inference, as a PyTorch program runs by default; at batch 1 most
  layers are then bound by kernel launches, not by the GPU.
- ``graph``: the calls are captured once into a CUDA graph (``torch.cuda.CUDAGraph``) and the graph is
  replayed: the same GPU work without per-kernel launch overhead (what CUDA graphs or ``torch.compile``
  with ``mode="reduce-overhead"`` give). One replay runs :func:`calls_per_replay` inferences; a layer
  that cycles through weight copies captures every copy, a network captures its whole forward.

:func:`make_runner` returns ``(run, inferences per run)`` for the sweep's timing loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .errors import SweepError

__all__ = ["GRAPH_MIN_CALLS", "calls_per_replay", "make_runner"]

# Layer calls captured per graph at least, so that one replay's launch is small next to its GPU work.
GRAPH_MIN_CALLS = 20
_WARMUP_CALLS = 3


def calls_per_replay(copies: int, *, network: bool) -> int:
    """Inferences per graph replay: a network's forward once; a layer's copies, repeated to 20 calls."""
    if network:
        return 1
    return copies * max(1, math.ceil(GRAPH_MIN_CALLS / copies))


def _capture(call: Callable[[], Any], calls: int) -> Callable[[], Any]:
    # Warm up on a side stream (cuDNN picks its algorithms, allocators settle), as capture requires.
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(_WARMUP_CALLS * calls):
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            call()
    return graph.replay


def make_runner(
    call: Callable[[], Any], *, mode: str, device: str, copies: int, network: bool
) -> tuple[Callable[[], Any], int]:
    """What the timing loop runs for one point, and how many inferences one run is.

    Args:
        call: One inference (a layer call cycling through its copies, or a network forward).
        mode: ``eager`` or ``graph``.
        device: ``cpu`` or ``cuda``.
        copies: Weight/input copies the layer call cycles through (1 for networks).
        network: Whether ``call`` is a whole network.

    Raises:
        SweepError: Graph mode on a device other than CUDA.
    """
    if mode == "eager":
        return call, 1
    if mode != "graph":
        raise SweepError(f"unknown mode {mode!r}; use eager or graph")
    if device != "cuda":
        raise SweepError(f"mode graph needs CUDA graphs, not available on {device}; use --mode eager")
    calls = calls_per_replay(copies, network=network)
    return _capture(call, calls), calls
