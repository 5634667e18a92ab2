"""Split-point optimisation: which layers run on the device and which on the server.

- :mod:`.wire`: how tensors travel: intermediate ones (:class:`WireFormat`), the input (:class:`InputWire`).
- :mod:`.problem`: the problem as arrays and :func:`evaluate` (the reference semantics).
- :mod:`.mincut`: the unconstrained split as an s-t minimum cut (networkx).
- :mod:`.milp`: the cvxpy/HiGHS model with parameters (LP relaxation or MILP with side constraints).
- :mod:`.solve`: :class:`SplitOptions`, :class:`SplitSolver` and :func:`solve_split`.
- :mod:`.policy`: the exact piecewise-constant bandwidth policy (:func:`bandwidth_policy`).
- :mod:`.deployed`: :func:`split_model` / :func:`split_policy`, the split of a deployed model that every
  entry point calls (wire default, TensorRT fixed point across the cut, server).
- :mod:`.result`: :class:`SplitResult`, :class:`CutTensor`, :class:`InfeasibleSplitError`.
"""

from __future__ import annotations

from .deployed import DeployedSplit as DeployedSplit
from .deployed import split_graph as split_graph
from .deployed import split_model as split_model
from .deployed import split_policy as split_policy
from .deployed import split_problem as split_problem
from .policy import BandwidthPolicy as BandwidthPolicy
from .policy import bandwidth_policy as bandwidth_policy
from .problem import SplitProblem as SplitProblem
from .problem import evaluate as evaluate
from .result import CutTensor as CutTensor
from .result import InfeasibleSplitError as InfeasibleSplitError
from .result import SplitResult as SplitResult
from .solve import SplitOptions as SplitOptions
from .solve import SplitSolver as SplitSolver
from .solve import solve_split as solve_split
from .wire import InputWire as InputWire
from .wire import WireFormat as WireFormat
