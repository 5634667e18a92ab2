"""The one place a job's pricing options become a board profile.

Execution mode, precision and power mode are all pricing options: they choose which coefficients
the cost model uses. Every job (and the study file's validation) goes through :func:`board_profile`,
so pricing a new option is a change here, not in the job runners.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..board import BoardProfile

__all__ = ["board_profile"]


@lru_cache(maxsize=64)
def board_profile(
    board: str, *, mode: str = "eager", precision: str | None = None, power_mode: str | None = None
) -> BoardProfile:
    """The profile of ``board`` priced for ``mode``, ``precision`` and ``power_mode`` (None: its own).

    Raises:
        ConfigError: The board, mode, precision or power mode is unknown or not priced for the board.
    """
    from ..board import load_board
    from ..deploy import configure

    return configure(load_board(board), mode=mode, precision=precision, power_mode=power_mode)
