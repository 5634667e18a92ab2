"""Typed errors for user mistakes.

Every error here carries a one-line message that names the problem and the fix. The CLI prints
``error: <message>`` and exits with code 2; library users catch :class:`SplitpruneError`.
"""

from __future__ import annotations


class SplitpruneError(Exception):
    """Base class for errors caused by user input (not bugs)."""


class ConfigError(SplitpruneError):
    """A TOML profile is missing, malformed, or has an unknown key or bad value."""


class ModelLoadError(SplitpruneError):
    """A model spec could not be resolved into an ``nn.Module``."""


class InputShapeError(SplitpruneError):
    """An input shape string or tensor is not usable."""


class TraceError(SplitpruneError):
    """torch.fx could not trace the model."""


class DataError(SplitpruneError):
    """A measurement CSV or other data file is malformed."""


class OutputError(SplitpruneError):
    """A result cannot be written where the user asked (a missing permission, a file in the way)."""


def exception_reason(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name where it has none (for one-line errors)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
