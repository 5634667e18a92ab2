"""The one place a job's pricing options become a board profile.

Execution mode, precision and power mode are all pricing options: they choose which coefficients
the cost model uses. Every job (and the study file's validation) goes through :func:`board_profile`,
so pricing a new option is a change here, not in the job runners.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..board import BoardProfile

__all__ = ["board_profile"]


@lru_cache(maxsize=64)
def board_profile(
    board: str, *, mode: str = "eager", precision: str | None = None, power_mode: str | None = None
) -> BoardProfile:
    """The profile of ``board`` priced for ``mode``, ``precision`` and ``power_mode``.

    ``precision`` and ``power_mode`` may be None or the profile's own (the cost model prices one
    precision and power mode per profile file for now).

    Raises:
        ConfigError: The board or mode is unknown, or the precision or power mode is not priced.
    """
    from ..board import load_board

    profile = load_board(board)
    own = profile.board
    if precision is not None and precision != own.precision:
        raise ConfigError(
            f"precision {precision!r} is not priced yet for board {board!r} (its profile is "
            f"{own.precision}); remove it from precisions or use {own.precision!r}"
        )
    if power_mode is not None and power_mode != own.power_mode:
        raise ConfigError(
            f"power mode {power_mode!r} is not priced yet for board {board!r} (its profile is "
            f"{own.power_mode!r}); remove it from power_modes or use {own.power_mode!r}"
        )
    return profile.for_mode(mode)
