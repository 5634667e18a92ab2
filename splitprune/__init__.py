"""splitprune: energy-aware split computing and pruning for NVIDIA Jetson boards.

Data flows one way, model -> graph -> annotated graph -> decisions:

- :mod:`splitprune.models`: resolve a model spec (``torchvision:``, ``ultralytics:``, ``timm:``, ``hf:``,
  ``model.onnx``, ``pkg.mod:fn``, ``file.py:fn``) into a module; :mod:`splitprune.zoo`: the optional
  families and torchvision detectors' network + post-processing.
- :mod:`splitprune.ops`: the per-operation registry (layer kind, MAC count, shape rule; ATen ops too).
- :mod:`splitprune.tracing`: torch.fx tracing and meta-tensor shape propagation into a networkx DAG;
  :mod:`splitprune.dispatch_tracing` and :mod:`splitprune.export_tracing`: the ATen-level fallbacks;
  :mod:`splitprune.onnx_import`: ONNX files into the same DAG.
- :mod:`splitprune.graph`: :func:`trace` a model into a :class:`LayerGraph` (networkx DAG of layers).
- :mod:`splitprune.board`: board profiles (TOML) and the empirical per-layer cost model.
- :mod:`splitprune.energy`: :func:`annotate` a graph with per-layer energy and latency.
- :mod:`splitprune.link`: link and server profiles; :mod:`splitprune.split`: the device/server cut
  (exact, on DAGs); :mod:`splitprune.export`: runnable head/tail programs.
- :mod:`splitprune.prune`: structured pruning to an energy budget.
- :mod:`splitprune.calibrate`: fit a board profile from ``measure`` sweeps.
- :mod:`splitprune.config`, :mod:`splitprune.files`, :mod:`splitprune.errors`: strict TOML loading,
  atomic writes, user-error types; :mod:`splitprune.quiet`: keeps native output (the solver's
  banner) off stdout.
- :mod:`splitprune.plots`: matplotlib figures; :mod:`splitprune.cli`: the ``splitprune`` command.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .board import BoardProfile as BoardProfile
from .board import load_board as load_board
from .energy import annotate as annotate
from .errors import SplitpruneError as SplitpruneError
from .graph import LayerGraph as LayerGraph
from .graph import trace as trace

# Split-computing names load on first use: the solver pulls in networkx and numpy-heavy modules
# that `estimate` does not need.
_LAZY = {
    "load_link": "splitprune.link",
    "load_server": "splitprune.link",
    "SplitOptions": "splitprune.split",
    "solve_split": "splitprune.split",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'splitprune' has no attribute {name!r}")
