"""Shared plotting helpers: a headless backend and atomic PNG writing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from ..files import write_atomic  # noqa: E402

__all__ = ["save_figure"]


def save_figure(figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(figure)
    write_atomic(Path(path), buffer.getvalue())
    return Path(path)
