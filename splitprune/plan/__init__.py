"""Joint planning: where to cut a model and how much to prune its device side, together.

- :mod:`.search`: :class:`PlanOptions` and :func:`plan` (candidate cuts, trajectories, exact splits,
  the choice at each rate); its docstring describes the search and its bounds.
- :mod:`.candidates`: the candidate cuts whose device sides are pruned.
- :mod:`.trajectory`: progressive pruning of one candidate's device side with the link in the
  importance (:class:`Trajectory`), and how saliency removed is counted.
- :mod:`.result`: :class:`PlanPoint`, :class:`PlanResult`, :class:`PlanSweep` (``splitprune.plan/1``)
  and :class:`PlanInfeasibleError`.
- :mod:`.export`: :func:`pruned_model` and :func:`export_plan` (runnable pruned head and tail).
"""

from __future__ import annotations

from .result import PlanInfeasibleError as PlanInfeasibleError
from .result import PlanPoint as PlanPoint
from .result import PlanResult as PlanResult
from .result import PlanSweep as PlanSweep
from .search import PlanOptions as PlanOptions
from .search import plan as plan
