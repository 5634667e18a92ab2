"""The one place a job's deployment options become a :class:`~splitprune.deploy.Deployment`.

Execution mode, precision, power mode, explicit clocks, batch and TensorRT launch are all deployment
options: every job (and the study file's validation) goes through :func:`job_deployment`, which
calls :meth:`Deployment.of` exactly as the CLI does, so a study row prices what ``splitprune split``
with the same options prices.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..board import BoardProfile
    from ..deploy import Deployment

__all__ = ["board_profile", "job_deployment"]


@lru_cache(maxsize=64)
def job_deployment(
    board: str,
    *,
    mode: str = "eager",
    precision: str | None = None,
    power_mode: str | None = None,
    clocks: str | None = None,
    batch: int | None = None,
    launch: str | None = None,
) -> Deployment:
    """The deployment of ``board`` with these options (None: the profile's own), cached per worker.

    Raises:
        ConfigError: The board or an option is unknown or not priced for the board.
    """
    from ..deploy import Deployment

    return Deployment.of(board, mode=mode, precision=precision, power_mode=power_mode, clocks=clocks,
                         batch=batch, launch=launch)


def board_profile(
    board: str, *, mode: str = "eager", precision: str | None = None, power_mode: str | None = None
) -> BoardProfile:
    """The deployed profile of ``board`` (:func:`job_deployment`'s coefficients)."""
    return job_deployment(board, mode=mode, precision=precision, power_mode=power_mode).profile
