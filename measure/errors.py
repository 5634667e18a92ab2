"""Errors raised by ``measure`` for problems the user can fix (bad grid, missing sensor, bad CSV).

Each carries a one-line message naming the problem and the fix; ``python -m measure`` prints it as
``error: <message>`` and exits with code 2.
"""

from __future__ import annotations

__all__ = ["GridError", "MeasureError", "SensorError", "SweepError"]


class MeasureError(Exception):
    """Base class for user-fixable problems in ``measure``."""


class SensorError(MeasureError):
    """A power sensor is missing, unreadable or not running."""


class GridError(MeasureError):
    """A sweep grid TOML is malformed, has an unknown key or a bad value."""


class SweepError(MeasureError):
    """A sweep cannot start or resume (e.g. the output CSV belongs to another run)."""
