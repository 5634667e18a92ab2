"""splitprune: energy-aware split computing and pruning for NVIDIA Jetson boards.

Data flows one way, model -> graph -> annotated graph -> decisions:

- :mod:`splitprune.models`: resolve ``torchvision:NAME`` / ``pkg.mod:fn`` / ``file.py:fn`` into a module.
- :mod:`splitprune.ops`: the per-operation registry (layer kind, MAC count, shape rule).
- :mod:`splitprune.tracing`: torch.fx tracing and meta-tensor shape propagation into a networkx DAG.
- :mod:`splitprune.graph`: :func:`trace` a model into a :class:`LayerGraph` (networkx DAG of layers).
- :mod:`splitprune.hardware`: what a profile knows of its hardware (GPU, power modes, precisions,
  runtimes and their launch costs); :mod:`splitprune.board`: board profiles (TOML) and the empirical
  per-layer cost formulas.
- :mod:`splitprune.deploy`: a :class:`Deployment` (profile, mode, precision, power mode or explicit
  clocks, batch, TensorRT launch), parsed once; :mod:`splitprune.nvpmodel`: a Jetson's own
  ``/etc/nvpmodel.conf`` as power modes.
- :mod:`splitprune.fusion`: TensorRT kernel fusion; :mod:`splitprune.pricing`: :func:`price`, the one
  function that turns a graph and a deployment into per-node costs; :mod:`splitprune.energy`:
  :func:`annotate`, a thin wrapper that writes them on the graph.
- :mod:`splitprune.link`: link and server profiles; :mod:`splitprune.split`: the device/server cut
  (exact, on DAGs) and :func:`split_model`, what every entry point calls;
  :mod:`splitprune.export`: runnable head/tail programs.
- :mod:`splitprune.prune`: structured pruning to an energy budget; :mod:`splitprune.plan`: the cut
  and the pruning together.
- :mod:`splitprune.runtime`: serve/run a live split over ZeroMQ; :mod:`splitprune.study`: many
  deployments, models and links on a pool or Ray.
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
from .deploy import Deployment as Deployment
from .energy import annotate as annotate
from .errors import SplitpruneError as SplitpruneError
from .graph import LayerGraph as LayerGraph
from .graph import trace as trace
from .pricing import price as price

# Split-computing names load on first use: the solver pulls in networkx and numpy-heavy modules
# that `estimate` does not need.
_LAZY = {
    "load_link": "splitprune.link",
    "load_server": "splitprune.link",
    "SplitOptions": "splitprune.split",
    "solve_split": "splitprune.split",
    "split_model": "splitprune.split",
    "split_policy": "splitprune.split",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'splitprune' has no attribute {name!r}")
