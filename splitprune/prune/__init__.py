"""Structured pruning to an energy (or latency) budget on a board, driven by the board's cost model.

- :mod:`.core`: :func:`prune_to_budget`, the budget loop, and :class:`PruneOptions`.
- :mod:`.importance`: :class:`EnergyAwareImportance` (saliency per joule) and the baselines.
- :mod:`.select`: per-group scores and the greedy, budget-aware choice of one step.
- :mod:`.channels`: the analytic cost of a traced model under changed channel counts.
- :mod:`.groups`: torch-pruning's dependency graph with its traps handled; model checks (what is
  supported: CNNs, ViT's ``nn.MultiheadAttention``, Swin v1, ConvNeXt; what is refused).
- :mod:`.swin`: torch-pruning pruners and tracing proxies for torchvision Swin's window attention
  and patch merging.
- :mod:`.budget`: :class:`Budget` (fraction of baseline, joules or seconds).
- :mod:`.result`: :class:`PruneResult` and per-layer :class:`LayerRow`.
- :mod:`.io`: :func:`save_pruned` / :func:`load_pruned` (state dict + pruning history, no pickles).
- :mod:`.finetune`: a small supervised fine-tuning loop for the bundled example.
"""

from __future__ import annotations

from .budget import Budget as Budget
from .budget import BudgetError as BudgetError
from .core import PruneOptions as PruneOptions
from .core import prune_to_budget as prune_to_budget
from .groups import UnsupportedModelError as UnsupportedModelError
from .importance import EnergyAwareImportance as EnergyAwareImportance
from .io import load_pruned as load_pruned
from .io import save_pruned as save_pruned
from .result import LayerRow as LayerRow
from .result import PruneResult as PruneResult
