"""Helpers shared by the CLI commands: output channels, JSON, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from ..errors import InputShapeError, SplitpruneError
from ..files import write_atomic

__all__ = ["emit_json", "fail", "parse_input_shape", "people", "write_atomic"]

# Tables for people go to stdout; progress and warnings to stderr. With --json nothing but the
# document is printed to stdout, so commands print their tables only when json_out is false.
people = Console(width=None if sys.stdout.isatty() else 150)
status = Console(stderr=True, soft_wrap=True)  # one message, one line, whatever the width


def fail(message: str) -> None:
    """Raise a user error; the CLI prints it on one line and exits with code 2."""
    raise SplitpruneError(message)


def emit_json(document: dict[str, Any]) -> None:
    """Print ``document`` as the only thing on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def parse_input_shape(text: str | None, batch: int | None = None) -> tuple[int, ...] | None:
    """Parse ``1,3,224,224`` into a shape; ``batch`` replaces the first dimension."""
    if text is None:
        if batch is not None and batch < 1:
            raise InputShapeError(f"--batch must be at least 1, got {batch}")
        return None
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise InputShapeError(
            f"bad --input-shape {text!r}: give comma-separated positive integers like 1,3,224,224"
        ) from None
    if not shape or any(d < 1 for d in shape):
        raise InputShapeError(
            f"bad --input-shape {text!r}: give comma-separated positive integers like 1,3,224,224"
        )
    if batch is not None:
        if batch < 1:
            raise InputShapeError(f"--batch must be at least 1, got {batch}")
        shape = (batch, *shape[1:])
    return shape


def join_names(names: Sequence[str]) -> str:
    """Comma-join for messages."""
    return ", ".join(names)
