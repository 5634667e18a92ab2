"""Fixtures for the measure tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    root.mkdir()
    return root


@pytest.fixture
def h100_data() -> Path:
    """``data/h100``: the real H100 sweeps shipped in the repository."""
    return REPO / "data" / "h100"
