"""Idle power read only once it has settled.

After a load, power does not drop to idle at once: on an H100 it decays from ~700 W to a plateau of
~127 W over ~1.3 s and then stays on that plateau (far above the 71 W of a cold GPU) for many seconds.
An idle reading taken during the decay makes net energy noisy and sometimes negative. :func:`settle_idle`
reads the mean power of consecutive blocks and stops when two blocks in a row agree within a tolerance;
the idle power is their mean. A cap bounds the wait; a reading that hit the cap says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["IdleReading", "settle_idle"]


@dataclass(frozen=True)
class IdleReading:
    """An idle power reading.

    Attributes:
        power_w: Idle power in watts: the mean of the last two blocks when settled, else the last block.
        settle_s: Seconds from the first block to the end of the reading.
        settled: Whether two consecutive blocks agreed before the cap.
        blocks: Number of blocks read.
    """

    power_w: float
    settle_s: float
    settled: bool
    blocks: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return asdict(self)


def settle_idle(
    block_power_w: Callable[[float], float],
    *,
    block_s: float,
    tolerance: float,
    max_s: float,
    clock: Callable[[], float] = time.perf_counter,
) -> IdleReading:
    """Read blocks of idle power until two in a row agree within ``tolerance`` (relative), or ``max_s``.

    Args:
        block_power_w: Measures the mean power over a block of (at least) the given seconds and returns
            it in watts; it blocks for that long.
        block_s: Block length in seconds (two blocks make the idle reading).
        tolerance: Largest relative difference between consecutive blocks that counts as settled.
        max_s: Cap on the wait in seconds; at least two blocks are always read.
        clock: Monotonic clock in seconds (injectable for tests).
    """
    start_s = clock()
    previous_w = block_power_w(block_s)
    blocks = 1
    while True:
        current_w = block_power_w(block_s)
        blocks += 1
        elapsed_s = clock() - start_s
        scale_w = max(abs(previous_w), abs(current_w))
        if abs(current_w - previous_w) <= tolerance * scale_w:
            return IdleReading(0.5 * (previous_w + current_w), elapsed_s, True, blocks)
        if elapsed_s >= max_s or current_w != current_w:  # NaN never settles
            return IdleReading(current_w, elapsed_s, False, blocks)
        previous_w = current_w
